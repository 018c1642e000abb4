-- PEP 550's decimal example: two interleaved generators, each with its own precision.
local precision = contextvars.ContextVar("decimal precision", 28)

local function divide(x, y)
  return string.format("%." .. precision:get() .. "g", x / y)
end

local function fractions(prec, x, y)
  return coroutine.wrap(function()
    precision:set(prec)
    coroutine.yield(divide(x, y))
    coroutine.yield(divide(x, y ^ 2))
  end)
end

local g1 = fractions(2, 1, 3)
local g2 = fractions(6, 2, 3)
-- list(zip(g1, g2))
for _ = 1, 2 do
  local a, b = g1(), g2()
  emit("(" .. a .. ", " .. b .. ")")
end
emit("outside: precision = " .. precision:get())
