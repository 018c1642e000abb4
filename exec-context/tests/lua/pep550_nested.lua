-- PEP 550, "Generators" in the specification: a generator driving a nested generator.
local var1 = contextvars.ContextVar("var1")
local var2 = contextvars.ContextVar("var2")

local function nested_gen()
  emit("nested: var1 = " .. var1:get() .. ", var2 = " .. var2:get())
  var1:set("var1-nested-gen")
  coroutine.yield()
  emit("nested: var1 = " .. var1:get() .. ", var2 = " .. var2:get())
  coroutine.yield()
end

local function gen()
  var1:set("var1-gen")
  var2:set("var2-gen")
  local n = coroutine.wrap(nested_gen)
  n()
  emit("gen: var1 = " .. var1:get() .. ", var2 = " .. var2:get())
  var1:set("var1-gen-mod")
  var2:set("var2-gen-mod")
  n()
  emit("gen: var1 = " .. var1:get() .. ", var2 = " .. var2:get())
end

-- list(g)
local g = coroutine.create(gen)
while coroutine.status(g) ~= "dead" do
  assert(coroutine.resume(g))
end
emit("outer: var1 = " .. tostring(var1:get(nil)) .. ", var2 = " .. tostring(var2:get(nil)))
