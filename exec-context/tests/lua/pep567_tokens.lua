-- PEP 567: tokens, copy_context and Context:run, and the three reset errors.
local var = contextvars.ContextVar("var", "default")
local other = contextvars.ContextVar("other")

emit("default: " .. var:get())
emit("get(default): " .. other:get("given"))
local ok, err = pcall(function() return other:get() end)
emit("no value: " .. tostring(ok) .. " " .. tostring(err):match("LookupError[^\n]*"))

local token = var:set("one")
emit("set: " .. var:get())
var:reset(token)
emit("reset: " .. var:get())

ok, err = pcall(function() var:reset(token) end)
emit("reused token: " .. tostring(ok) .. " " .. tostring(err):match("RuntimeError[^\n]*"))

local foreign = other:set("x")
ok, err = pcall(function() var:reset(foreign) end)
emit("token of another var: " .. tostring(ok) .. " " .. tostring(err):match("ValueError[^\n]*"))
other:reset(foreign) -- still usable with its own variable
emit("other after reset: " .. tostring(other:get(nil)))

local ctx = contextvars.copy_context()
local inner
ctx:run(function() inner = var:set("in ctx") end)
ok, err = pcall(function() var:reset(inner) end)
emit("token of another context: " .. tostring(ok) .. " " .. tostring(err):match("ValueError[^\n]*"))

var:set("outside")
local seen = ctx:run(function(suffix) return var:get() .. suffix end, "!")
emit("ctx:run: " .. seen .. "; ctx:get: " .. ctx:get(var) .. "; outside: " .. var:get())

ok, err = pcall(function() ctx:run(function() ctx:run(function() end) end) end)
emit("entered twice: " .. tostring(ok) .. " " .. tostring(err):match("RuntimeError[^\n]*"))
