-- eventilator.store: connections to the configured Redis store.
-- One place turns config.redis into the redis binding's connect options,
-- for the shipped modules (metrics, dedupe, silences, stream, cluster) and
-- for the `redis` global of rule files, whose connect() takes config.redis
-- as its defaults.
--
-- The store behind Sentinel (redis.sentinel = { master = "store", addrs =
-- { "10.0.0.1:26379", ... } }) is store_sentinel.lua's: connect() follows the
-- master Sentinel names. See docs/cluster.md.
local M = {}

-- The settings this module reads (config.redis): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
redis = {
  { "host", "string", "127.0.0.1" },
  { "port", "integer", 6379 },
  { "path", "string" },
  { "username", "string" },
  { "password", "string" },
  { "db", "integer", 0 },
  { "timeout", "number", 2 },
  { "max_reply", "number", 64 }, -- MiB: the largest reply a call accepts
  { "sentinel", "table" }, -- { master = "store", addrs = { "host:port", ... } }: checked by M.sentinel
}
]==]

-- The options the binding's connect() takes (it raises on any other key).
local KEYS = { "host", "port", "path", "username", "password", "db", "timeout", "connect_timeout",
  "max_reply" }

-- connect_opts([overrides]) -> options: config.redis, then the overrides.
-- An empty password or username means none (as the Go config's RedisAuth = "");
-- a unix socket path drops the default host and port.
function M.connect_opts(overrides)
  local cfg = require("eventilator.config").redis or {}
  local opts = {}
  for _, k in ipairs(KEYS) do
    if cfg[k] ~= "" then opts[k] = cfg[k] end
  end
  if type(overrides) == "table" then
    if overrides.path or overrides.host or overrides.port then
      opts.path, opts.host, opts.port = nil, nil, nil -- an address given replaces the configured one
    end
    for k, v in pairs(overrides) do opts[k] = v end
  end
  if opts.path then opts.host, opts.port = nil, nil end
  return opts
end

-- redis.sentinel set at all: only then is the Sentinel-backed path (store_sentinel.lua) loaded,
-- so that a call recording a failover to a plain store does not undump it.
local function sentinel_set()
  local s = (require("eventilator.config").redis or {}).sentinel
  return not (s == nil or (type(s) == "table" and next(s) == nil))
end

-- sentinel() -> redis.sentinel when it names a master, nil when off | nil, err (a wrong setting)
function M.sentinel()
  if not sentinel_set() then return nil end
  return require("eventilator.store_sentinel").settings()
end

-- connect([overrides]) -> client | nil, err
-- With redis.sentinel and no address in overrides: the master Sentinel names.
function M.connect(overrides)
  if overrides ~= nil and type(overrides) ~= "table" then
    error("bad argument #1 to 'connect' (table expected, got " .. type(overrides) .. ")", 2)
  end
  local opts = M.connect_opts(overrides)
  local direct = type(overrides) == "table" and (overrides.path or overrides.host or overrides.port)
  if direct or not sentinel_set() then return require("eventilator.redis").connect(opts) end
  return require("eventilator.store_sentinel").connect(opts)
end

-- The `redis` global of rule files: the binding, with this connect().
M.rule_global = setmetatable({ connect = M.connect }, { __index = require("eventilator.redis") })

return M
