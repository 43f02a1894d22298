-- A watch-mode process for the specs and benches: its own config, rules
-- folder, state folder and log, started as `eventilator watch` under
-- `timeout` (procs.spawn), with its exit code kept in a file.
--
--   local w = watcher.new{ config = "watch = { sentinels = { ... } }" }
--   w:record("10-record.lua", { "+sdown", "+odown" })  -- a rule that logs what it saw
--   w:start()
--   w:wait_handled(function(r) return r.name == "+odown" end, 1, 30)
--   w:settle() -- until all it heard has run (its stats line)
--   w:stop()   -- SIGTERM; returns the exit code
local procs = require("procs")

local M = {}
local W = {}
W.__index = W

function M.new(opts)
  opts = opts or {}
  local dir = procs.tmpdir()
  local self = setmetatable({
    dir = dir, rules = dir .. "/rules", state = dir .. "/state", log = dir .. "/eventilator.log",
    conf = dir .. "/eventilator.conf", out = dir .. "/handled.tsv", env = opts.env or {},
  }, W)
  os.execute(string.format("mkdir -p %s %s", procs.quote(self.rules), procs.quote(self.state)))
  self:config(opts.config or "")
  return self
end

function W:config(text)
  procs.write(self.conf, string.format("log = { target = %q, level = \"debug\" }\nrules_dir = %q\n" ..
    "state_dir = %q\n%s\n", self.log, self.rules, self.state, text))
end

function W:rule(name, text)
  procs.write(self.rules .. "/" .. name, text)
end

-- A rule that appends one tab-separated line per event it sees:
-- name, pod, source, sentinel, sentinels (comma list), synthetic (1/0),
-- instance type, time, text. One write per line (O_APPEND), so
-- concurrent runs never interleave.
function W:record(name, patterns, extra)
  local list = {}
  for i, p in ipairs(patterns) do list[i] = string.format("%q", p) end
  self:rule(name, string.format([[
on({ %s }, function(ev)
  local f = assert(io.open(%q, "a"))
  f:write(table.concat({ ev.name, ev.pod or "-", ev.source or "-", ev.sentinel or "-",
    table.concat(ev.sentinels or {}, ","), ev.synthetic and "1" or "0",
    ev.instance and ev.instance.type or "-", string.format("%%.6f", ev.time), ev.text or "" }, "\t") .. "\n")
  f:close()
  %s
  return true
end)
]], table.concat(list, ", "), self.out, extra or ""))
end

-- 10-record.lua for +sdown, also appending `v` to <dir>/versions each run: which rules a run had.
function W:version(v)
  self:record("10-record.lua", { "+sdown" }, string.format([[
  local g = assert(io.open(%q, "a")); g:write(%q, "\n"); g:close()]], self.dir .. "/versions", v))
end

-- The recorded events, each { name, pod, source, sentinel, sentinels = {...},
-- synthetic, type, time, text }.
function W:handled()
  local out = {}
  for line in (procs.read(self.out) or ""):gmatch("[^\n]+") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    local sentinels = {}
    for s in (f[5] or ""):gmatch("[^,]+") do sentinels[#sentinels + 1] = s end
    out[#out + 1] = { name = f[1], pod = f[2], source = f[3], sentinel = f[4], sentinels = sentinels,
                      synthetic = f[6] == "1", type = f[7], time = tonumber(f[8]), text = f[9] }
  end
  return out
end

function W:count(pred)
  local n = 0
  for _, r in ipairs(self:handled()) do
    if pred(r) then n = n + 1 end
  end
  return n
end

-- Until at least n recorded events satisfy pred.
function W:wait_handled(pred, n, timeout, what)
  procs.wait(function() return self:count(pred) >= n end, timeout or 30, what or "handled events")
end

function W:logtext()
  return procs.read(self.log) or ""
end

function W:log_count(plain)
  local text, n, i = self:logtext(), 0, 1
  while true do
    local s, e = text:find(plain, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

-- Until the log holds `plain` at least n times.
function W:wait_log(plain, n, timeout)
  procs.wait(function() return self:log_count(plain) >= (n or 1) end, timeout or 20,
    "log line '" .. plain .. "'")
end

-- Its counters: a `watch: stats` line asked for with SIGUSR1, as a table
-- (heard, unusable, duplicates, matched, dropped, runs, failed_runs, waiting,
-- running, ...).
function W:stats(timeout)
  local before = self:log_count("watch: stats ")
  self:signal("USR1")
  self:wait_log("watch: stats ", before + 1, timeout)
  local last
  for l in self:logtext():gmatch("watch: stats ([^\n]*)") do last = l end
  local t = {}
  for k, v in last:gmatch("([%w_]+)=([%d.]+)") do t[k] = tonumber(v) end
  return t
end

-- Until all it has heard has run: nothing waits, nothing runs, and two stats
-- lines in a row have the same heard count (nothing came in between).
-- Returns the last stats.
function W:settle(timeout)
  local last
  procs.wait(function()
    local st = self:stats()
    local idle = last and st.waiting == 0 and st.running == 0 and st.heard == last.heard
    last = st
    return idle
  end, timeout or 30, "the watcher to settle (waiting=0, running=0, heard unchanged)")
  return last
end

-- Start `eventilator watch` with args; waits for its start line.
function W:start(args)
  local pidfile, rcfile = self.dir .. "/watch.pid", self.dir .. "/watch.rc"
  os.remove(pidfile)
  os.remove(rcfile)
  self.rcfile = rcfile
  local env = { "EVENTILATOR_CONF=" .. procs.quote(self.conf) }
  for k, v in pairs(self.env) do env[#env + 1] = k .. "=" .. procs.quote(v) end
  local before = self:log_count("watch: started")
  local inner = string.format("env %s %s %s & echo $! > %s; wait $!; echo $? > %s", table.concat(env, " "),
    procs.quote(procs.build .. "/bin/eventilator"), "watch " .. (args or ""), procs.quote(pidfile), procs.quote(rcfile))
  self.wrapper = procs.spawn("sh -c " .. procs.quote(inner), self.dir .. "/watch.out")
  procs.wait(function()
    self.pid = tonumber(procs.read(pidfile) or "")
    return self.pid ~= nil
  end, 10, "watcher pid")
  procs.wait(function()
    return self:log_count("watch: started") > before or procs.read(rcfile) ~= nil
  end, 20, "watcher start")
  return self
end

function W:signal(sig)
  procs.kill(self.pid, sig)
end

-- Its exit code once it has exited (nil while it runs).
function W:exit_code()
  return tonumber(procs.read(self.rcfile or "") or "")
end

-- SIGTERM and wait; returns the exit code.
function W:stop(timeout)
  if not self.pid then return nil end
  self:signal("TERM")
  procs.wait(function() return self:exit_code() ~= nil end, timeout or 60, "watcher to exit")
  self.pid = nil
  return self:exit_code()
end

function W:cleanup()
  if self.pid and not self:exit_code() then
    self:signal("KILL")
  end
  procs.rmtree(self.dir)
end

-- A spec's teardown: SIGTERM and wait (an error waiting is not the teardown's), then as cleanup.
function W:finish(timeout)
  pcall(self.stop, self, timeout)
  self:cleanup()
end

-- A plain redis-server named as a Sentinel, on which a spec PUBLISHes
-- events by hand, and the watcher a case starts on it. A describe hooks
-- fx.setup, fx.teardown and fx.after_each (busted's hooks are the spec
-- file's globals); fx.start(watch, top): a watcher whose config is
-- `watch = { sentinels = {that server}, <watch> }` then <top>; fx.go():
-- start it and wait until it listens; fx.publish(name, text).
function M.on_redis()
  local fx = {}
  function fx.setup() fx.redis = procs.start_redis() end
  function fx.teardown() if fx.redis then fx.redis.stop() end end
  function fx.after_each()
    if fx.w then
      fx.w:finish(60)
      fx.w = nil
    end
  end
  function fx.start(watch, top)
    fx.w = M.new{ config = string.format("watch = { sentinels = { \"127.0.0.1:%d\" }, %s }\n%s", fx.redis.port,
      watch or "", top or "") }
    return fx.w
  end
  function fx.go()
    fx.w:start()
    fx.w:wait_log("connected and subscribed", 1)
  end
  function fx.publish(name, text) return procs.cli(fx.redis.port, "publish", name, text) end
  return fx
end

-- A predicate for w:count / w:wait_handled: an event record by name, and by type and pod if given.
function M.is(name, typ, pod)
  return function(r)
    return r.name == name and (typ == nil or r.type == typ) and (pod == nil or r.pod == pod)
  end
end

-- The watcher's dedupe key of an event (docs/watch.md): name and
-- description, +odown's without the votes.
function M.key(name, text)
  if name == "+odown" then text = text:gsub(" #quorum .*$", "") end
  return name .. " " .. text
end

-- How many runs the watcher owes for `raises`: what the Sentinels raised, as
-- constellation's c:raised() lists it (time order, each with its sentinel).
-- By the dedupe (docs/watch.md), a report of a key first reported less than
-- `window` s before is a duplicate, unless its Sentinel reported that one
-- already (a flap: a new occurrence). Returns key -> { least, most }: the count
-- with the window 2 s shorter and 2 s longer (the watcher hears an event a
-- moment after Sentinel logs it); they differ only for reports that far apart.
function M.owed(raises, window)
  local function count(w)
    local latest, n = {}, {}
    for _, e in ipairs(raises) do
      local k = M.key(e.name, e.text)
      local occ = latest[k]
      if occ and e.t - occ.t <= w and not occ.by[e.sentinel] then
        occ.by[e.sentinel] = true
      else
        latest[k] = { t = e.t, by = { [e.sentinel] = true } }
        n[k] = (n[k] or 0) + 1
      end
    end
    return n
  end
  local short, long = count(window - 2), count(window + 2)
  local out = {}
  for k, n in pairs(short) do out[k] = { math.min(n, long[k] or n), math.max(n, long[k] or n) } end
  return out
end

-- A progress line on stderr, for the specs that take long.
function M.note(fmt, ...)
  io.stderr:write("[watch] " .. string.format(fmt, ...) .. "\n")
end

return M
