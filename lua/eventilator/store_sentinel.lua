-- eventilator.store_sentinel: the store behind Sentinel (redis.sentinel = {
-- master = "store", addrs = { "10.0.0.1:26379", ... } }), for store.lua,
-- which loads it only when redis.sentinel is set. connect() asks a Sentinel
-- for the master's address (SENTINEL GET-MASTER-ADDR-BY-NAME), connects, and
-- checks with ROLE that it is a master; a refused connect or a replica (the
-- store failed over) asks again. The address is kept for the process, so a
-- long-running process asks once per failover, not once per connect. A
-- client already connected to the old master gets READONLY or a closed
-- connection: connect again, and this connect follows. See docs/cluster.md.
local M = {}

-- What redis.sentinel may hold.
local SENTINEL_KEYS = { master = "string", addrs = "table", username = "string", password = "string",
  timeout = "number" }

-- settings() -> redis.sentinel when it names a master | nil, err (a wrong setting).
-- Called by store.sentinel() once it has found the setting set.
function M.settings()
  local s = require("eventilator.config").redis.sentinel
  if type(s) ~= "table" then return nil, "redis.sentinel: expected a table" end
  for k, v in pairs(s) do
    if not SENTINEL_KEYS[k] then
      return nil, "redis.sentinel." .. tostring(k) .. ": unknown key (known keys: master, addrs, "
        .. "username, password, timeout)"
    end
    if type(v) ~= SENTINEL_KEYS[k] then
      return nil, string.format("redis.sentinel.%s: expected a %s, got %s", k, SENTINEL_KEYS[k], type(v))
    end
  end
  if not s.master or s.master == "" then
    return nil, "redis.sentinel.master: the master's name is required"
  end
  if not s.addrs or #s.addrs == 0 then
    return nil, "redis.sentinel.addrs: at least one Sentinel (\"host:port\") is required"
  end
  for i, a in ipairs(s.addrs) do
    if type(a) ~= "string" or not a:match("^%[?[^%s]-%]?:%d+$") then
      return nil, string.format("redis.sentinel.addrs[%d]: expected \"host:port\", got %s", i, tostring(a))
    end
  end
  return s
end

-- "host:port" or "[v6]:port" -> host, port
local function split(addr)
  local host, port = addr:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = addr:match("^(.+):(%d+)$") end
  return host, tonumber(port)
end

-- The master's address as Sentinel last named it, for this process; and the
-- Sentinel that named it (asked first next time).
M.master = nil -- { host, port }
local first = 1

-- ask(s, timeout) -> { host, port } | nil, err: the first Sentinel of s.addrs that names the master.
local function ask(s, timeout)
  local redis = require("eventilator.redis")
  local errs, n = {}, #s.addrs
  for k = 0, n - 1 do
    local i = (first - 1 + k) % n + 1
    local host, port = split(s.addrs[i])
    local c, err = redis.connect{ host = host, port = port, timeout = s.timeout or timeout,
      username = s.username, password = s.password ~= "" and s.password or nil }
    local reply
    if c then
      reply, err = c:call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.master)
      c:close()
      if c and reply == nil and not err then err = "does not know master " .. s.master end
    end
    if type(reply) == "table" and reply[1] and tonumber(reply[2]) then
      first = i
      return { host = reply[1], port = tonumber(reply[2]) }
    end
    errs[#errs + 1] = s.addrs[i] .. ": " .. tostring(err or "unexpected reply")
  end
  return nil, "no Sentinel named the master of '" .. s.master .. "' (" .. table.concat(errs, "; ") .. ")"
end

-- The master's client, or nil and why; `fresh`: the address was just asked for.
local function connect_master(s, opts, fresh)
  if not M.master or fresh then
    local m, err = ask(s, opts.timeout)
    if not m then return nil, "store: " .. err end
    M.master = m
  end
  opts.host, opts.port, opts.path = M.master.host, M.master.port, nil
  local c, err = require("eventilator.redis").connect(opts)
  if not c then return nil, err, true end
  local role, rerr = c:call("ROLE")
  if type(role) == "table" and role[1] == "master" then return c end
  c:close()
  if not role then return nil, rerr, true end
  return nil, string.format("store: %s:%d is a %s, not the master of '%s' (a failover in progress?)",
    M.master.host, M.master.port, tostring(role[1]), s.master), true
end

-- connect(opts) -> client | nil, err: opts as store.connect_opts made them (their
-- address is replaced by the master's). Called by store.connect once it has found
-- redis.sentinel set.
function M.connect(opts)
  local s, serr = M.settings()
  if not s then return nil, "store: " .. serr end
  local had = M.master ~= nil
  local c, err, stale = connect_master(s, opts, false)
  if not c and stale and had then -- refused, or no longer the master: a failover; ask again
    c, err = connect_master(s, opts, true)
  end
  return c, err
end

return M
