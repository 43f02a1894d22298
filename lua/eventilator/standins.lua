-- eventilator.standins: the stand-ins eventilator.testing puts in place of
-- the `redis`, `http` and `tcp` bindings for rule specs. A spec sets their
-- answers, and they record what was sent (docs/testing-rules.md).
--
--   standins.redis() / standins.http() / standins.tcp() -> S: S.module is
--   what require("eventilator.redis") (and so on) returns; S.sent, S.answer.
local M = {}

-- ------------------------------------------------------------ misuse
-- A stand-in refuses what its binding refuses, with the binding's words
-- (src/bindings/: luaL_argerror's `bad argument #n to 'f' (...)`), so that a
-- rule whose spec passes does not raise in production: `timout = 5` fails
-- both. What the network or a server does is the spec's to answer.

local function argerror(n, fname, msg)
  error(string.format("bad argument #%d to '%s' (%s)", n, fname, msg), 0)
end

local function want(n, fname, what, v)
  argerror(n, fname, what .. " expected, got " .. (v == nil and "no value" or type(v)))
end

-- binding.h's evl_check_seconds
local function seconds(n, fname, what, v)
  if type(v) ~= "number" or v ~= v or v <= 0 then -- NaN too
    argerror(n, fname, what .. " must be a positive number of seconds")
  end
end

local function int_in(v, lo, hi)
  local i = type(v) == "number" and math.tointeger(v)
  return i and i >= lo and i <= hi
end

local function closed(self, method, what)
  if self.closed then
    error(string.format("calling '%s' on bad self (attempt to use a closed %s)", method, what), 0)
  end
end

-- redis.connect's options (lredis.c rc_readopts)
local REDIS_OPTS = { host = "string", port = "port", path = "string", username = "string",
  password = "string", db = "db", timeout = "seconds", connect_timeout = "seconds", max_reply = "mib" }

local function check_redis_option(k, v)
  if type(k) ~= "string" then argerror(1, "connect", "option names must be strings") end
  local kind = REDIS_OPTS[k]
  local function bad(msg) argerror(1, "connect", "option '" .. k .. "' " .. msg) end
  if not kind then argerror(1, "connect", "unknown option '" .. k .. "'") end
  if kind == "seconds" then seconds(1, "connect", "option '" .. k .. "'", v) end
  local lua_type = (kind == "string" and "string") or "number"
  if type(v) ~= lua_type then bad(string.format("must be a %s (got %s)", lua_type, type(v))) end
  if (k == "host" or k == "path") and v:find("\0", 1, true) then bad("contains a zero byte") end
  if kind == "port" and not int_in(v, 1, 65535) then bad("must be an integer from 1 to 65535") end
  if kind == "db" and not int_in(v, 0, 2147483647) then bad("must be an integer from 0 to 2147483647") end
  if kind == "mib" and not (type(v) == "number" and v > 0 and v <= 4096) then
    bad("must be a number of MiB in (0, 4096]")
  end
end

local function check_redis_opts(opts)
  if opts == nil then return end
  if type(opts) ~= "table" then want(1, "connect", "table", opts) end
  for k, v in pairs(opts) do check_redis_option(k, v) end
  if opts.path and (opts.host ~= nil or opts.port ~= nil) then
    argerror(1, "connect", "option 'path' excludes 'host' and 'port'")
  end
  if opts.path and #opts.path >= 108 then
    argerror(1, "connect", "option 'path' is too long for a unix socket")
  end
  if opts.username and opts.username ~= "" and not (opts.password and opts.password ~= "") then
    argerror(1, "connect", "option 'username' needs 'password'")
  end
end

local function arg_ok(v)
  return type(v) == "string" or type(v) == "number"
end

-- http.request's options (lhttp.c check_keys, read_opts)
local HTTP_OPTS = { url = "string", method = "string", headers = "table", body = "string", timeout = "number",
  connect_timeout = "number", unix_socket = "string", insecure = "boolean", max_body = "number",
  follow_redirects = "boolean" }
local TOKEN = "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$"

local function check_headers(n, fname, headers)
  for k, v in pairs(headers) do
    if type(k) ~= "string" then argerror(n, fname, "header names must be strings") end
    if not k:find(TOKEN) then argerror(n, fname, "invalid header name '" .. k .. "'") end
    if type(v) ~= "string" and type(v) ~= "number" then
      argerror(n, fname, string.format("header '%s' must be a string (got %s)", k, type(v)))
    end
    if tostring(v):find("[\r\n%z]") then
      argerror(n, fname, "header '" .. k .. "' contains a line break or NUL")
    end
  end
end

local function check_http_opts(n, fname, opts, json)
  for k, v in pairs(opts) do
    if type(k) ~= "string" then argerror(n, fname, "option names must be strings") end
    if not HTTP_OPTS[k] then argerror(n, fname, "unknown option '" .. k .. "'") end
    if k == "timeout" or k == "connect_timeout" then seconds(n, fname, "option '" .. k .. "'", v) end
    if type(v) ~= HTTP_OPTS[k] then
      argerror(n, fname, string.format("option '%s' must be a %s (got %s)", k, HTTP_OPTS[k], type(v)))
    end
  end
  for _, k in ipairs(json and { "url", "body" } or {}) do
    if opts[k] ~= nil then argerror(n, fname, "option '" .. k .. "' is set by post_json's arguments") end
  end
  if not json and opts.url == nil then argerror(n, fname, "option 'url' is required") end
  if opts.method and not opts.method:find(TOKEN) then
    argerror(n, fname, "invalid method '" .. opts.method .. "'")
  end
  if opts.method == "HEAD" and opts.body then argerror(n, fname, "a HEAD request cannot have a body") end
  if opts.headers then check_headers(n, fname, opts.headers) end
  if opts.max_body ~= nil and not int_in(opts.max_body, 0, math.maxinteger) then
    argerror(n, fname, "option 'max_body' must be a non-negative integer")
  end
end

-- tcp.connect's options (ltcp.c tcp_options)
local function check_tcp_opts(n, opts)
  if opts == nil then return end
  if type(opts) ~= "table" then want(n, "connect", "table", opts) end
  for k, v in pairs(opts) do
    if type(k) ~= "string" then argerror(n, "connect", "option names must be strings") end
    if k ~= "timeout" and k ~= "connect_timeout" then
      argerror(n, "connect", "unknown option '" .. k .. "'")
    end
    seconds(n, "connect", "option '" .. k .. "'", v)
  end
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

-- An answer: a value, or a function of what was sent.
local function answer(a, ...)
  if type(a) == "function" then return a(...) end
  return copy(a)
end

-- Redis replies the stand-in gives by itself: a small keyspace (strings,
-- hashes, sorted sets, expiry on the stand-in's clock) for the commands the
-- shipped modules send, so dedupe.once and the silences behave as against a
-- real store; integers for other counting commands, "OK" for anything else.
-- EVAL runs the script here, redis.call and all (a spec's answer("EVAL", ...)
-- still wins), so a module's Redis-side Lua is exercised, not mocked.
local INTEGER = { SADD = 1, SREM = 1, HINCRBY = 1, INCR = 1, INCRBY = 1, EXPIRE = 1,
                  RPUSH = 1, LPUSH = 1, PUBLISH = 1 }

-- A score as Redis prints it.
local function score_text(n)
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return string.format("%d", math.floor(n)) end
  return string.format("%.17g", n)
end

-- A ZRANGEBYSCORE bound: "-inf", "+inf", "(x" (exclusive) or "x".
local function bound(b)
  local open = b:sub(1, 1) == "("
  local v = open and b:sub(2) or b
  v = (v == "-inf" and -math.huge) or ((v == "+inf" or v == "inf") and math.huge) or tonumber(v)
  return v, open
end

local function in_range(x, lo, lo_open, hi, hi_open)
  return (lo_open and x > lo or not lo_open and x >= lo) and (hi_open and x < hi or not hi_open and x <= hi)
end

-- The members of a sorted set, by score then member.
local function ordered(z)
  local m = {}
  for k in pairs(z) do m[#m + 1] = k end
  table.sort(m, function(a, b)
    if z[a] ~= z[b] then return z[a] < z[b] end
    return a < b
  end)
  return m
end

-- A value passed to redis.call, as Redis turns a Lua number into an argument.
local function arg_text(v)
  if math.type(v) == "float" and v == math.floor(v) then return string.format("%.0f", v) end
  return tostring(v)
end

-- A script's return value, as Redis converts it for the client.
local function script_reply(v)
  local t = type(v)
  if t == "number" then return math.floor(v) end
  if t == "boolean" then return v and 1 or false end
  if t ~= "table" then return v end
  if v.err or v.ok then return v.err and { err = v.err } or v.ok end
  local out = {}
  for i = 1, #v do out[i] = script_reply(v[i]) end
  return out
end

function M.redis()
  local S = { sent = {}, connects = {}, answers = {}, data = {}, expires = {} }
  -- answer(command, reply): reply (or reply(cmd...) for a function) to every
  -- such command; { err = "..." } is an error reply.
  function S.answer(cmd, reply) S.answers[cmd:upper()] = reply end
  -- fail(err): connect() returns nil, err (nil: connects again).
  function S.fail(err) S.down = err end
  -- commands(): the names sent, in order.
  function S.commands()
    local t = {}
    for i, c in ipairs(S.sent) do t[i] = c[1] end
    return t
  end
  -- S.time: the store's clock (unix seconds) for TIME and expiry; nil: os.time().
  local function now_ms() return math.floor((S.time or os.time()) * 1000) end
  local function get(key, kind)
    local exp = S.expires[key]
    if exp and exp <= now_ms() then S.data[key], S.expires[key] = nil, nil end
    local v = S.data[key]
    if kind and v == nil then
      v = { [kind] = {} }
      S.data[key] = v
    end
    return v
  end
  local function field(key, kind)
    local v = get(key)
    return type(v) == "table" and v[kind] or nil
  end
  local reply
  local KEYSPACE = {
    TIME = function()
      local ms = now_ms()
      return { tostring(ms // 1000), tostring(ms % 1000 * 1000) }
    end,
    EXISTS = function(c) return get(c[2]) ~= nil and 1 or 0 end,
    GET = function(c)
      local v = get(c[2])
      return type(v) == "string" and v or false
    end,
    SET = function(c)
      local exp
      for i = 4, #c do
        local o = c[i]:upper()
        if o == "NX" and get(c[2]) ~= nil then return false end
        if o == "EX" and tonumber(c[i + 1]) then exp = now_ms() + tonumber(c[i + 1]) * 1000 end
      end
      S.data[c[2]], S.expires[c[2]] = c[3], exp
      return "OK"
    end,
    DEL = function(c)
      local n = 0
      for i = 2, #c do
        if get(c[i]) ~= nil then n = n + 1 end
        S.data[c[i]], S.expires[c[i]] = nil, nil
      end
      return n
    end,
    PEXPIREAT = function(c)
      if get(c[2]) == nil then return 0 end
      S.expires[c[2]] = tonumber(c[3])
      return 1
    end,
    HSET = function(c)
      local h, n = get(c[2], "hash").hash, 0
      for i = 3, #c - 1, 2 do
        if h[c[i]] == nil then n = n + 1 end
        h[c[i]] = c[i + 1]
      end
      return n
    end,
    HGET = function(c) return (field(c[2], "hash") or {})[c[3]] or false end,
    HGETALL = function(c)
      local out, h = {}, field(c[2], "hash") or {}
      local names = {}
      for k in pairs(h) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do out[#out + 1], out[#out + 2] = k, h[k] end
      return out
    end,
    ZADD = function(c)
      local z, n, first = get(c[2], "zset").zset, 0, 3
      while c[first] and not tonumber(c[first]) do first = first + 1 end -- NX, GT, CH ...: not modelled
      for i = first, #c - 1, 2 do
        if z[c[i + 1]] == nil then n = n + 1 end
        z[c[i + 1]] = tonumber(c[i])
      end
      return n
    end,
    ZREM = function(c)
      local z, n = field(c[2], "zset") or {}, 0
      for i = 3, #c do
        if z[c[i]] ~= nil then n, z[c[i]] = n + 1, nil end
      end
      return n
    end,
    ZREMRANGEBYSCORE = function(c)
      local z, n = field(c[2], "zset") or {}, 0
      local lo, lo_open = bound(c[3])
      local hi, hi_open = bound(c[4])
      for m, sc in pairs(z) do
        if in_range(sc, lo, lo_open, hi, hi_open) then n, z[m] = n + 1, nil end
      end
      return n
    end,
    ZRANGE = function(c)
      local z = field(c[2], "zset") or {}
      local m, out = ordered(z), {}
      local from, to = tonumber(c[3]), tonumber(c[4])
      if from < 0 then from = #m + from end
      if to < 0 then to = #m + to end
      for i = math.max(from, 0) + 1, math.min(to + 1, #m) do
        out[#out + 1] = m[i]
        if c[5] and c[5]:upper() == "WITHSCORES" then out[#out + 1] = score_text(z[m[i]]) end
      end
      return out
    end,
    ZRANGEBYSCORE = function(c)
      local z, out = field(c[2], "zset") or {}, {}
      local lo, lo_open = bound(c[3])
      local hi, hi_open = bound(c[4])
      for _, m in ipairs(ordered(z)) do
        if in_range(z[m], lo, lo_open, hi, hi_open) then out[#out + 1] = m end
      end
      return out
    end,
    EVAL = function(c)
      local nkeys = tonumber(c[3])
      local keys, argv = {}, {}
      for i = 1, nkeys do keys[i] = c[3 + i] end
      for i = 4 + nkeys, #c do argv[#argv + 1] = c[i] end
      local function run(...)
        local cmd = table.pack(...)
        for i = 1, cmd.n do cmd[i] = arg_text(cmd[i]) end
        return reply(cmd)
      end
      local redis = {
        pcall = run,
        call = function(...)
          local r = run(...)
          if type(r) == "table" and r.err then error(r, 2) end
          return r
        end,
        error_reply = function(msg) return { err = msg } end,
        status_reply = function(msg) return { ok = msg } end,
      }
      local env = { redis = redis, KEYS = keys, ARGV = argv, tonumber = tonumber, tostring = tostring,
        ipairs = ipairs, pairs = pairs, type = type, string = string, math = math, table = table,
        unpack = table.unpack, error = error, pcall = pcall }
      local fn, err = load(c[2], "=eval", "t", env)
      if not fn then return { err = "ERR Error compiling script: " .. err } end
      local ok, r = pcall(fn)
      if not ok then
        return type(r) == "table" and r or { err = "ERR Error running script: " .. tostring(r) }
      end
      return script_reply(r)
    end,
  }
  function reply(cmd)
    local name = tostring(cmd[1]):upper()
    if S.answers[name] ~= nil then return answer(S.answers[name], table.unpack(cmd)) end
    if name == "PING" then return "PONG" end
    if KEYSPACE[name] then
      local r = KEYSPACE[name](cmd)
      local v = cmd[2] and S.data[cmd[2]]
      -- as in Redis, a hash or sorted set that loses its last member is gone
      if type(v) == "table" and next(v.hash or v.zset) == nil then S.data[cmd[2]] = nil end
      return r
    end
    if INTEGER[name] then return 1 end
    return "OK"
  end
  local function send(client, cmd)
    local c = {}
    for i, a in ipairs(cmd) do c[i] = tostring(a) end
    S.sent[#S.sent + 1] = c
    local name = c[1]:upper()
    if client.queue and name ~= "EXEC" and name ~= "DISCARD" then
      client.queue[#client.queue + 1] = c
      return "QUEUED"
    end
    if name == "MULTI" then
      client.queue = {}
      return "OK"
    end
    if name == "EXEC" then
      local q = client.queue or {}
      client.queue = nil
      local out = { n = #q }
      for i, qc in ipairs(q) do out[i] = reply(qc) end
      return out
    end
    return reply(c)
  end
  local Client = {}
  Client.__index = Client
  function Client:call(...)
    closed(self, "call", "redis client")
    local cmd = table.pack(...)
    if cmd.n == 0 then argerror(1, "call", "value expected") end
    for i = 1, cmd.n do
      if not arg_ok(cmd[i]) then argerror(i, "call", "string or number expected, got " .. type(cmd[i])) end
    end
    local r = send(self, cmd)
    if type(r) == "table" and r.err then return nil, r.err end
    return r
  end
  function Client:pipeline(cmds)
    closed(self, "pipeline", "redis client")
    if type(cmds) ~= "table" then want(1, "pipeline", "table", cmds) end
    for i, c in ipairs(cmds) do
      local function bad(fmt, ...) argerror(1, "pipeline", string.format("command %d" .. fmt, i, ...)) end
      if type(c) ~= "table" then bad(" is a %s, not a list", type(c)) end
      if #c == 0 then bad(" is empty") end
      for j = 1, #c do
        if not arg_ok(c[j]) then bad(", argument %d: string or number expected, got %s", j, type(c[j])) end
      end
    end
    local out = { n = #cmds }
    for i, c in ipairs(cmds) do out[i] = send(self, c) end
    return out
  end
  function Client:close() self.closed = true end
  S.module = {
    connect = function(opts)
      check_redis_opts(opts)
      S.connects[#S.connects + 1] = copy(opts or {})
      if S.down then return nil, S.down end
      return setmetatable({}, Client)
    end,
  }
  return S
end

function M.http()
  local S = { sent = {}, answers = {} }
  -- answer(key, response): key "METHOD url", or url; response { status,
  -- body, headers }, { err = "..." } for a request that got no response, or
  -- function(request) -> either. Unanswered requests get { status = 200, body = "" }.
  function S.answer(key, res) S.answers[key] = res end
  local function send(opts)
    local req = copy(opts)
    req.method = req.method or (req.body and "POST" or "GET")
    req.headers = req.headers or {}
    S.sent[#S.sent + 1] = req
    local a = S.answers[req.method .. " " .. req.url]
    if a == nil then a = S.answers[req.url] end
    if a == nil then a = { status = 200, body = "", headers = {} } end
    local res = answer(a, req)
    if type(res) == "table" and res.err then return nil, res.err end
    res.headers = res.headers or {}
    res.body = res.body or ""
    return res
  end
  S.module = {
    request = function(opts)
      if type(opts) ~= "table" then want(1, "request", "table", opts) end
      check_http_opts(1, "request", opts)
      return send(opts)
    end,
    post_json = function(...)
      local url, value, opts = ...
      if type(url) ~= "string" then want(1, "post_json", "string", url) end
      if select("#", ...) < 2 then argerror(2, "post_json", "value expected") end
      if opts ~= nil and type(opts) ~= "table" then want(3, "post_json", "table", opts) end
      check_http_opts(3, "post_json", opts or {}, true)
      local ok, body = pcall(require("cjson").encode, value)
      if not ok then argerror(2, "post_json", "cannot encode value: " .. tostring(body)) end
      local req = copy(opts or {})
      req.url, req.body = url, body
      req.method = req.method or "POST"
      req.headers = req.headers or {}
      local has_type = false
      for k in pairs(req.headers) do
        if k:lower() == "content-type" then has_type = true end
      end
      if not has_type then req.headers["Content-Type"] = "application/json" end
      return send(req)
    end,
  }
  return S
end

function M.tcp()
  local S = { sent = {}, answers = {} }
  -- answer(address, reply): address "host:port" or a unix path; reply the
  -- text the peer sends back, { err = "..." } for a refused connect, or
  -- function(sent_so_far) -> either. sent: { { address, data } } per send.
  function S.answer(addr, reply) S.answers[addr] = reply end
  local Conn = {}
  Conn.__index = Conn
  function Conn:send(data)
    closed(self, "send", "tcp connection")
    if type(data) ~= "string" and type(data) ~= "number" then want(1, "send", "string", data) end
    data = tostring(data)
    S.sent[#S.sent + 1] = { address = self.address, data = data }
    self.out[#self.out + 1] = data
    return true
  end
  function Conn:receive(pattern)
    closed(self, "receive", "tcp connection")
    if type(pattern) == "number" then
      if not int_in(pattern, 0, 16 * 1024 * 1024) then
        argerror(1, "receive", "byte count out of range (0..16 MiB)")
      end
    elseif pattern ~= nil then
      if type(pattern) ~= "string" then want(1, "receive", "string", pattern) end
      if not (pattern:gsub("^%*", "") == "l" or pattern:gsub("^%*", "") == "a") then
        argerror(1, "receive", 'invalid pattern (expected n, "*l" or "*a")')
      end
    end
    if self.inbox == nil then
      local a = S.answers[self.address]
      self.inbox = a ~= nil and answer(a, table.concat(self.out)) or ""
    end
    if self.inbox == "" then return nil, "closed" end
    if pattern == "*a" or pattern == "a" then
      local all = self.inbox
      self.inbox = ""
      return all
    end
    if type(pattern) == "number" then
      local part = self.inbox:sub(1, pattern)
      self.inbox = self.inbox:sub(pattern + 1)
      return part
    end
    local line, rest = self.inbox:match("^([^\n]*)\n?(.*)$")
    self.inbox = rest
    return (line:gsub("\r$", ""))
  end
  function Conn:settimeout(t)
    closed(self, "settimeout", "tcp connection")
    seconds(1, "settimeout", "timeout", t)
    return true
  end
  function Conn:shutdown()
    closed(self, "shutdown", "tcp connection")
    return true
  end
  function Conn:close() self.closed = true end
  S.module = {
    connect = function(host, port, opts)
      if type(host) ~= "string" and type(host) ~= "number" then want(1, "connect", "string", host) end
      host = tostring(host)
      if host:find("\0", 1, true) then argerror(1, "connect", "contains a zero byte") end
      if host:find("/", 1, true) then -- tcp.connect(path [, opts]): a unix socket
        if port ~= nil and type(port) ~= "table" then want(2, "connect", "table", port) end
        check_tcp_opts(2, port)
        port = nil
      else
        if type(port) ~= "number" then want(2, "connect", "number", port) end
        if not math.tointeger(port) then argerror(2, "connect", "number has no integer representation") end
        if port < 1 or port > 65535 then argerror(2, "connect", "port out of range") end
        check_tcp_opts(3, opts)
      end
      local addr = port and (tostring(host) .. ":" .. tostring(port)) or tostring(host)
      local a = S.answers[addr]
      if type(a) == "table" and a.err then return nil, a.err end
      return setmetatable({ address = addr, out = {} }, Conn)
    end,
  }
  return S
end

return M
