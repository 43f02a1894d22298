-- eventilator.settings: one way for every shipped module to read its
-- settings. The host has already merged each known section of the config
-- with its defaults (each module declares its own in a `--[==[settings`
-- block, from which the build generates the loader's schema: tools/derive.lua), so a module's
-- settings are config.<name>, with the caller's opts on top:
--
--   local s = require("eventilator.settings").get("slack", opts)
local M = {}

-- The settings this module reads (config.swarm, config.hcloud): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
swarm = {
  { "image", "string", "redis:7" },
  { "service", "string" },
  { "network", "string" },
  { "max_per_hour", "integer", 3 },
}
hcloud = {
  { "url", "string", "https://api.hetzner.cloud/v1" },
  { "token", "string" },
  { "server_type", "string", "cx22" },
  { "image", "string", "debian-12" },
  { "location", "string" },
  { "ssh_keys", "list" },
  { "max_per_hour", "integer", 3 },
}
]==]

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

-- triggers(list) -> the patterns for a trigger_on list (slack, sensu,
-- webhook), as the shipped rules register them: a name without its + or -
-- sign ("promoted-slave") stands for both signs ("*promoted-slave").
function M.triggers(list)
  local events = {}
  for i, e in ipairs(list or {}) do
    events[i] = e:find("^[+-]") and e or "*" .. e
  end
  return events
end

return M
