-- PEP 550, contextlib.contextmanager: a generator that opts out of its own logical context
-- (`contextvars.no_context`) changes its resumer's context, like a context manager.
local var = contextvars.ContextVar("var")

local function var_context(value, own_context)
  local make = own_context and coroutine.wrap or contextvars.no_context
  local step = make(function()
    local original = var:get(nil)
    var:set(value)
    coroutine.yield()
    var:set(original)
  end)
  return step
end

local function with(cm, body)
  cm() -- __enter__
  body()
  cm() -- __exit__
end

var:set(0)
with(var_context(10, true), function()
  emit("own context: var = " .. var:get())
end)
with(var_context(10, false), function()
  emit("no_context: var = " .. var:get())
end)
emit("after: var = " .. var:get())

-- no_context on a coroutine object
local co = contextvars.no_context(coroutine.create(function() var:set(20) end))
assert(coroutine.resume(co))
emit("after resume of a no_context coroutine: var = " .. var:get())
