-- eventilator.consul: the current master of each pod in Consul's KV store,
-- for consul-template, Consul DNS-aware clients or a watch to follow. See
-- docs/consul.md.
--
-- Settings: config.consul (`url`, `prefix`, `token`, `timeout`), opts on top.
local M = {}

-- The settings this module reads (config.consul): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
consul = {
  { "url", "string", "http://127.0.0.1:8500" },
  { "prefix", "string", "redis" },
  { "token", "string" },
  { "timeout", "number", 5 },
}
]==]

local settings = require("eventilator.settings")

local function hostport(a)
  local ip = tostring(a.ip)
  if ip:find(":", 1, true) then ip = "[" .. ip .. "]" end
  return ip .. ":" .. tostring(a.port)
end

-- Path segments of a key are escaped one by one; "/" between them stays.
local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~/]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- put(key, value [, opts]) -> true | nil, err
-- PUT <url>/v1/kv/<key> with value as the body; Consul answers `true`.
function M.put(key, value, opts)
  if type(key) ~= "string" or key == "" then error("bad argument #1 to 'put' (key expected)", 2) end
  local s = settings.get("consul", opts)
  local url = tostring(s.url or ""):gsub("/+$", "") .. "/v1/kv/" .. escape(key:gsub("^/+", ""))
  local headers = { ["Content-Type"] = "text/plain" }
  if s.token and s.token ~= "" then headers["X-Consul-Token"] = s.token end
  local timeout = tonumber(s.timeout) or 5
  local res, err = require("eventilator.http").request {
    method = "PUT", url = url, body = tostring(value), headers = headers,
    timeout = timeout, connect_timeout = math.min(timeout, 2),
  }
  if not res then return nil, "consul: " .. tostring(err) end
  local body = tostring(res.body or ""):gsub("%s+$", "")
  if res.status ~= 200 then
    return nil, string.format("consul: PUT %s: HTTP %d: %s", key, res.status, body:sub(1, 200))
  end
  if body ~= "true" then return nil, "consul: PUT " .. key .. ": Consul answered " .. body:sub(1, 200) end
  return true
end

-- put_master(ev [, opts]) -> true | nil, err
-- On +switch-master, and on client-reconfig from the leader, writes the new
-- master's "ip:port" to <prefix>/<pod>. Other events (and observers'
-- client-reconfig) are skipped with true, so it can be a handler as it is.
function M.put_master(ev, opts)
  if type(ev) ~= "table" then error("bad argument #1 to 'put_master' (event table expected)", 2) end
  if ev.name == "client-reconfig" and ev.role ~= "leader" then return true end
  if ev.name ~= "+switch-master" and ev.name ~= "client-reconfig" then return true end
  if not ev.pod or type(ev.new_master) ~= "table" then
    return nil, "consul: " .. tostring(ev.name) .. " names no pod or new master"
  end
  local s = settings.get("consul", opts)
  local prefix = tostring(s.prefix or ""):gsub("^/+", ""):gsub("/+$", "")
  local key = (prefix ~= "" and (prefix .. "/") or "") .. ev.pod
  local ok, err = M.put(key, hostport(ev.new_master), opts)
  if not ok then return nil, err end
  require("eventilator.log").info("consul: %s = %s", key, hostport(ev.new_master))
  return true
end

return M
