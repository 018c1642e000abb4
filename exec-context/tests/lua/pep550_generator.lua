-- PEP 550, "Generators": a set inside a generator stays in it; the caller's later changes
-- show through unless the generator set the variable itself.
local var1 = contextvars.ContextVar("var1")
local var2 = contextvars.ContextVar("var2")

local function gen()
  var1:set("gen")
  emit("gen: var1 = " .. var1:get() .. ", var2 = " .. var2:get())
  coroutine.yield(1)
  -- main's change of var1 is shielded by gen's own; its change of var2 is visible
  emit("gen: var1 = " .. var1:get() .. ", var2 = " .. var2:get())
  coroutine.yield(2)
end

local g = coroutine.wrap(gen)
var1:set("main")
var2:set("main")
emit("next(g) = " .. g())
-- gen's change of var1 is not visible here
emit("main: var1 = " .. var1:get())
var1:set("main modified")
var2:set("main modified")
emit("next(g) = " .. g())
emit("main: var1 = " .. var1:get() .. ", var2 = " .. var2:get())
