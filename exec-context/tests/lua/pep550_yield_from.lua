-- PEP 550, "Should 'yield from' leak context changes?": no. Delegation through a wrapped
-- coroutine keeps the inner generator's sets in the inner generator.
local var = contextvars.ContextVar("var")

local function gen()
  for i = 0, 2 do
    var:set("gen")
    coroutine.yield(i)
  end
end

-- `yield from g`: re-yield everything the delegate yields.
local function yield_from(g)
  for value in g do
    coroutine.yield(value)
  end
end

local function outer_gen()
  var:set("outer_gen")
  local g = coroutine.wrap(gen)
  coroutine.yield(g()) -- next(g)
  emit("outer after next(g): " .. var:get())
  yield_from(g)
  emit("outer after yield from: " .. var:get())
  -- the refactored form: for .. in gen() do yield end
  for i in coroutine.wrap(gen) do
    coroutine.yield(i + 10)
  end
  emit("outer after for-in: " .. var:get())
end

var:set("main")
local seen = {}
for value in coroutine.wrap(outer_gen) do
  seen[#seen + 1] = tostring(value)
end
emit("yielded: " .. table.concat(seen, " "))
emit("main: " .. var:get())
