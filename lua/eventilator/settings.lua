-- eventilator.settings: one way for every shipped module to read its
-- settings. The host has already merged each known section of the config
-- with its defaults (the schema in src/config.c is the one place a default
-- is declared), so a module's settings are config.<name>, with the caller's
-- opts on top:
--
--   local s = require("eventilator.settings").get("slack", opts)
local M = {}

-- get(name [, opts]) -> a new table: config[name], then opts over it.
function M.get(name, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to '" .. name .. "' (table of settings expected, got " .. type(opts) .. ")", 3)
  end
  local s = {}
  local section = require("eventilator.config")[name]
  if type(section) == "table" then
    for k, v in pairs(section) do s[k] = v end
  end
  for k, v in pairs(opts or {}) do s[k] = v end
  return s
end

return M
