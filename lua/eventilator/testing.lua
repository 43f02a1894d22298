-- eventilator.testing: rule unit tests with busted (docs/testing-rules.md).
--
-- Loads a config and a rules folder into the host a real call uses (the C
-- engine as the Lua module eventilator/host.so: same config schema, parser,
-- matching, handler runs and budget), with stand-ins for `redis`, `http` and
-- `tcp`: a spec sets their answers, and they record what was sent.
--
--   local testing = require("eventilator.testing")
--   describe("failover metrics", function()
--     it("records the leader's failover", function()
--       local t = testing.load{ rules = testing.shipped_rules("10-failover-metrics.lua"),
--                               config = { metrics = { enabled = true } } }
--       local r = t:call("reconfigurator", "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6379")
--       assert.same({ "ok" }, r.outcomes)
--       assert.same({ "SADD", "pods-with-failovers", "pod1" }, t.redis.sent[2])
--     end)
--   end)
--
-- `eventilator test --spec FILE|DIR` runs busted with this module on the path.
local M = {}

local replay = require("eventilator.replay")

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Folder of this file: share/eventilator/eventilator/ once installed, lua/eventilator/ in the source tree.
local function here()
  local src = debug.getinfo(1, "S").source
  return (src:sub(1, 1) == "@" and src:sub(2) or src):match("^(.*)/[^/]*$") or "."
end

-- shipped_rules([file]) -> the shipped default rules folder, or one file of it.
-- examples([file]) -> the shipped example rules folder, or one file of it.
local function shipped(sub, file)
  for _, dir in ipairs({ here() .. "/../" .. sub, here() .. "/../../" .. sub }) do
    if exists(dir .. "/" .. (file or ".")) then return file and dir .. "/" .. file or dir end
  end
  error("eventilator.testing: no shipped " .. sub .. (file and ("/" .. file) or "") .. " near " .. here(), 2)
end
function M.shipped_rules(file) return shipped("rules", file) end
function M.examples(file) return shipped("examples/rules", file) end

-- ------------------------------------------------------------ config

-- A config table as the Lua chunk a config file is.
local function lua_value(v, indent)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    local key = type(k) == "number" and "" or
      (tostring(k):match("^[%a_][%w_]*$") and k .. " = " or "[" .. string.format("%q", k) .. "] = ")
    parts[#parts + 1] = indent .. "  " .. key .. lua_value(v[k], indent .. "  ")
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

local function config_text(cfg, dir)
  local lines = { string.format("state_dir = %q", dir .. "/state") }
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do lines[#lines + 1] = k .. " = " .. lua_value(cfg[k], "") end
  return table.concat(lines, "\n") .. "\n"
end

-- ------------------------------------------------------------ load

local T = {}
T.__index = T

-- Modules whose state belongs to one host: dropped so each load starts clean.
local function forget_modules()
  for name in pairs(package.loaded) do
    if name:find("^eventilator%.") and name ~= "eventilator.testing" and name ~= "eventilator.replay"
      and name ~= "eventilator.host" then
      package.loaded[name] = nil
    end
  end
end

-- load(opts) -> t
-- opts.config: a config file path, or a table of settings (written as a
--   config file; state_dir goes to a scratch folder); nil: built-in defaults.
-- opts.rules: a rules folder, a rule file, or a list of rule files.
-- opts.stand_ins: false to use the real redis, http and tcp bindings.
-- t.redis, t.http, t.tcp: the stand-ins; t.files: the rule files loaded
-- ({ path, ok, err, patterns }); t.config: the loaded config.
-- Shipped modules (and require("eventilator.config")) belong to the latest
-- load: use one loaded t at a time, a fresh one per test (before_each).
function M.load(opts)
  opts = opts or {}
  local dir = sh("mktemp -d /tmp/eventilator-testing.XXXXXX")
  local self = setmetatable({ dir = dir, logfile = dir .. "/log" }, T)
  local conf = opts.config
  if type(conf) == "table" then
    write(dir .. "/eventilator.conf", config_text(conf, dir))
    conf = dir .. "/eventilator.conf"
  end
  local rules = opts.rules
  if type(rules) == "string" and not exists(rules .. "/.") then rules = { rules } end
  if type(rules) == "table" then
    os.execute("mkdir -p " .. quote(dir .. "/rules"))
    for _, f in ipairs(rules) do
      if f:sub(1, 1) ~= "/" then f = sh("pwd") .. "/" .. f end
      os.execute(string.format("ln -s %s %s", quote(f), quote(dir .. "/rules/" .. f:match("([^/]*)$"))))
    end
    rules = dir .. "/rules"
  end
  forget_modules()
  if opts.stand_ins ~= false then
    local standins = require("eventilator.standins")
    self.redis, self.http, self.tcp = standins.redis(), standins.http(), standins.tcp()
    package.loaded["eventilator.redis"] = self.redis.module
    package.loaded["eventilator.http"] = self.http.module
    package.loaded["eventilator.tcp"] = self.tcp.module
  end
  local hostmod = require("eventilator.host")
  self.host = hostmod.new{ config = conf, rules = rules or (dir .. "/no-rules"), log = self.logfile }
  local config, path = self.host.load_config()
  hostmod.log_to_stderr(false)
  if not config then
    error("eventilator.testing: config " .. tostring(path) .. " did not load: " .. self:log(), 2)
  end
  self.config = config
  package.loaded["eventilator.config"] = nil -- this host's config, not an earlier one's
  self.files = self.host.load_rules()
  self.files_failed = 0
  for _, f in ipairs(self.files) do
    if not f.ok then self.files_failed = self.files_failed + 1 end
  end
  return self
end

-- The log lines written since the last call to log() (or load).
function T:log()
  local text = read(self.logfile) or ""
  local new = text:sub((self.logpos or 0) + 1)
  self.logpos = #text
  return new
end

local function finish(self, r)
  r.log = self:log()
  r.outcomes, r.rules = {}, {}
  for i, h in ipairs(r.handlers) do
    r.outcomes[i] = h.outcome
    r.rules[i] = h.file:match("([^/]*)$") .. ":" .. h.line
  end
  return r
end

-- t:call(argv0, arg...) or t:call{ argv0 = ..., args = {...}, time = ...,
-- sentinel = ... } -> result of one call, its handlers run (the same call
-- from the same sentinel after one that exited 1 is Sentinel's retry, and
-- skips what succeeded):
-- { ev, exit, error, log, handlers = { { rule, file, line, outcome, error } },
--   outcomes = { "ok", ... }, rules = { "10-x.lua:5", ... } }
function T:call(first, ...)
  local c = first
  if type(first) ~= "table" then c = { argv0 = first, args = { ... } } end
  self.ncalls = (self.ncalls or 0) + 1
  c.line = c.line or self.ncalls -- without a "sentinel", each call is a Sentinel of its own
  self:log()
  self.retries = self.retries or {}
  return finish(self, replay.call(self.host, c, { run = true, retries = self.retries }, self.files_failed))
end

-- t:replay(file | text | list of calls [, opts]) -> results (one per call,
-- as call() returns), problems (the bad lines' messages). opts.run
-- (default true), opts.sentinel.
function T:replay(src, opts)
  opts = opts or {}
  local calls, problems = src, {}
  if type(src) == "string" then
    local text = src:find("\n") and src or assert(read(src), "eventilator.testing: cannot read " .. src)
    calls, problems = replay.read(text, src:find("\n") and "(text)" or src)
  end
  for i, c in ipairs(calls) do c.line = c.line or i end
  local results, retries = {}, {}
  self:log()
  for _, c in ipairs(calls) do
    if not opts.sentinel or replay.from_sentinel(c, opts.sentinel) then
      local r = replay.call(self.host, c, { run = opts.run ~= false, retries = retries }, self.files_failed)
      results[#results + 1] = finish(self, r)
    end
  end
  local msgs = {}
  for i, p in ipairs(problems) do msgs[i] = p.msg end
  return results, msgs
end

-- Remove the scratch folder (config, log, rule links).
function T:close()
  if self.dir:find("^/tmp/eventilator%-testing%.") then os.execute("rm -rf " .. quote(self.dir)) end
end

-- ------------------------------------------------------------ busted

-- run_specs(args) -> busted's exit status: `eventilator test --spec FILE|DIR
-- [busted options]`, with the shipped Lua and C modules on the paths.
function M.run_specs(args)
  if #args == 0 then
    io.stderr:write("usage: eventilator test --spec FILE|DIR [busted options]\n")
    return 2
  end
  -- the full runtime put its module folder first on package.cpath
  local cdir = package.cpath:match("^([^;]*)/%?%.so")
  local luadir = os.getenv("EVENTILATOR_LUA_DIR")
  if not luadir or luadir == "" then
    luadir = cdir and cdir:gsub("/lib/eventilator$", "/share/eventilator") or "."
  end
  local busted = sh("command -v busted")
  if busted == "" then
    io.stderr:write("eventilator test --spec: busted not found (Debian: apt install lua-busted)\n")
    return 2
  end
  local old_path = os.getenv("LUA_PATH_5_4") or os.getenv("LUA_PATH") or ";"
  local old_cpath = os.getenv("LUA_CPATH_5_4") or os.getenv("LUA_CPATH") or ";"
  local q = {}
  for i, a in ipairs(args) do q[i] = quote(a) end
  local cmd = string.format("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 %s %s",
    quote(luadir .. "/?.lua;" .. luadir .. "/?/init.lua;" .. old_path .. ";"),
    quote((cdir and cdir .. "/?.so;" or "") .. old_cpath .. ";"), quote(busted), table.concat(q, " "))
  local ok, how, code = os.execute(cmd)
  if how == "signal" then return 1 end
  return ok and 0 or (code or 1)
end

return M
