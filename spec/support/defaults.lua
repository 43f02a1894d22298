-- The built-in default config, as the built binary declares it
-- (`eventilator config` with no config file): the schema (the modules' settings blocks, src/core/schema.c) is
-- the one place a default lives, and the specs read it from there.
--   local defaults = require("defaults")
--   CFG.slack = defaults().slack      -- a fresh copy each call
local procs = require("procs")
local json = require("cjson")

local text

local function load()
  local out, rc = procs.sh(string.format("EVENTILATOR_CONF=/nonexistent EVENTILATOR_LOG=/dev/null %s config",
    procs.quote(procs.build .. "/bin/eventilator")))
  assert(rc == 0, "eventilator config failed (is the tree built?): " .. tostring(out))
  return out
end

-- JSON numbers come back as floats; the config holds integers where whole.
local function ints(t)
  for k, v in pairs(t) do
    if type(v) == "table" then
      ints(v)
    elseif math.type(v) == "float" and math.tointeger(v) then
      t[k] = math.tointeger(v)
    end
  end
  return t
end

return function()
  text = text or load()
  return ints(json.decode(text))
end
