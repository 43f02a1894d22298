-- Cluster mode's processes for the specs (docs/cluster.md): watchers
-- (`eventilator watch --no-work`) and workers (`eventilator work`), each with
-- a folder of its own (config, rules, state_dir, log) as if each were a host
-- of its own, so that a worker that takes an entry over knows only what the
-- store tells it; and the rule they all run:
--
--   1. post { id = dedupe.key(ev), name } to the stand-in receiver (counted there);
--   2. the slow handler: a line "<uptime> <worker pid> <identity>" in
--      <dir>/inside, then, if <dir>/hold can be taken (renamed: one run
--      only), "<worker pid> <identity>" in <dir>/held and it stays there
--      until it is killed; else 50 ms (BLPOP on the store), then
--      "<identity>" in <dir>/finished.
--
-- The spec kills the worker that holds (its pid is in the line) while it is
-- inside handler 2: handler 1 must be skipped by the worker that takes the
-- entry over, handler 2 run again.
local procs = require("procs")
local watcher = require("watcher")
local json = require("cjson")

local M = {}

-- Seconds since boot (CLOCK_BOOTTIME): the same clock for the spec and for the handlers.
function M.uptime()
  return tonumber((procs.read("/proc/uptime") or ""):match("^(%S+)"))
end

-- The rule file of the header, for `patterns`; url: the receiver's; dir: where the lines go.
-- What every cluster spec's rule starts with: line(path, text) appends one line (append mode, so
-- the file's order is the order the runs wrote in); worker_pid() is the worker's (the runner's parent).
M.rule_prelude = [[
local function line(path, text)
  local f = assert(io.open(path, "a"))
  f:write(text, "\n")
  f:close()
end
local function worker_pid()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("l")
  f:close()
  return s:match("^%d+ %b() %S+ (%d+)")
end
]]

function M.rule(url, dir, patterns)
  local list = {}
  for i, p in ipairs(patterns) do list[i] = string.format("%q", p) end
  return M.rule_prelude .. string.format([[
local function uptime()
  local f = assert(io.open("/proc/uptime"))
  local s = f:read("l")
  f:close()
  return s:match("^(%%S+)")
end
on({ %s }, function(ev)
  local r, err = http.request{ method = "POST", url = %q, body = json.encode{ id = dedupe.key(ev), name = ev.name,
    source = ev.source }, headers = { ["content-type"] = "application/json" }, timeout = 5 }
  if not r then return nil, err end
  return r.status == 200 or nil, "status " .. tostring(r.status)
end)
on({ %s }, function(ev)
  local id = dedupe.key(ev)
  line(%q, uptime() .. " " .. worker_pid() .. " " .. id)
  if os.rename(%q, %q) then
    line(%q, worker_pid() .. " " .. id)
    while true do os.execute("sleep 0.05") end -- until the spec kills this worker
  end
  local c, err = redis.connect()
  if not c then return nil, err end
  local _, berr = c:call("BLPOP", "spec:never", 0.05)
  c:close()
  if berr then return nil, berr end
  line(%q, id)
  return true
end)
]], table.concat(list, ", "), url .. "/posted", table.concat(list, ", "), dir .. "/inside", dir .. "/hold",
    dir .. "/hold.taken", dir .. "/held", dir .. "/finished")
end

-- ---------------------------------------------------------------- processes

-- `eventilator <sub> <args>` for w (a watcher.new object), started as W:start does; waits for `ready` in its log.
local function go(w, sub, args, ready)
  local pidfile, rcfile = w.dir .. "/proc.pid", w.dir .. "/proc.rc"
  os.remove(pidfile)
  os.remove(rcfile)
  w.rcfile = rcfile
  local before = w:log_count(ready)
  local inner = string.format("env EVENTILATOR_CONF=%s %s %s %s & echo $! > %s; wait $!; echo $? > %s",
    procs.quote(w.conf), procs.quote(procs.build .. "/bin/eventilator"), sub, args or "", procs.quote(pidfile),
    procs.quote(rcfile))
  w.wrapper = procs.spawn("sh -c " .. procs.quote(inner), w.dir .. "/proc.out")
  procs.wait(function()
    w.pid = tonumber(procs.read(pidfile) or "")
    return w.pid ~= nil
  end, 10, sub .. " pid")
  procs.wait(function() return w:log_count(ready) > before or procs.read(rcfile) ~= nil end, 30, sub .. " start")
  return w
end

-- A process of its own folder: config `config` (plus the folders), rule `rule`.
function M.new(config, rule)
  local w = watcher.new{ config = config }
  w:rule("10-cluster.lua", rule)
  return w
end

-- `eventilator watch --no-work` (args: other options, "" for a watcher that works too).
function M.watcher(config, rule, args)
  local w = M.new(config, rule)
  go(w, "watch", args or "--no-work", "watch: cluster appender started")
  w:wait_log("connected and subscribed", 1)
  return w
end

function M.worker(config, rule)
  return go(M.new(config, rule), "work", "", "cluster worker")
end

-- `eventilator <args>` with w's config: stdout, exit code.
function M.run(w, args)
  return procs.sh(string.format("env EVENTILATOR_CONF=%s %s %s 2>&1", procs.quote(w.conf),
    procs.quote(procs.build .. "/bin/eventilator"), args))
end

-- `eventilator cluster status --json`, decoded, and its exit code.
function M.status(w)
  local out, rc = procs.sh(string.format("env EVENTILATOR_CONF=%s %s cluster status --json 2>/dev/null",
    procs.quote(w.conf), procs.quote(procs.build .. "/bin/eventilator")))
  local ok, t = pcall(json.decode, out)
  return ok and t or nil, rc, out
end

-- ---------------------------------------------------------------- what happened

-- identity -> how many times the receiver got it.
function M.posted(receiver)
  local n = {}
  for _, r in ipairs(receiver.requests()) do
    if r.json and r.json.id then n[r.json.id] = (n[r.json.id] or 0) + 1 end
  end
  return n
end

-- The lines of <dir>/inside: { t, pid, id } each; of <dir>/finished: identity -> count.
function M.inside(dir)
  local out = {}
  for l in (procs.read(dir .. "/inside") or ""):gmatch("[^\n]+") do
    local t, pid, id = l:match("^(%S+) (%d+) (.*)$")
    out[#out + 1] = { t = tonumber(t), pid = tonumber(pid), id = id }
  end
  return out
end

-- The run that holds (M.held(dir) -> { pid, id }), once there is one.
function M.held(dir)
  local pid, id = (procs.read(dir .. "/held") or ""):match("^(%d+) ([^\n]*)\n")
  if pid then return { pid = tonumber(pid), id = id } end
end

function M.finished(dir)
  local n = {}
  for l in (procs.read(dir .. "/finished") or ""):gmatch("[^\n]+") do n[l] = (n[l] or 0) + 1 end
  return n
end

-- The group's entries not yet read and pending on the store at `port` (nil, nil before the group
-- exists). Not read: 0 when the group has read up to the stream's last entry, else XINFO's lag
-- (a counter Redis 7.0 can leave wrong across a failover or a restart from the AOF).
function M.backlog(port, stream, group)
  stream = stream or "eventilator:events"
  local function fields(out)
    local lines, f = {}, {}
    for l in (out .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    for i = 1, #lines - 1, 2 do f[lines[i]] = f[lines[i]] or lines[i + 1] end
    return f
  end
  local g = fields(procs.cli(port, "xinfo", "groups", stream))
  if g.name ~= (group or "eventilator") then return nil, nil end
  local last = fields(procs.cli(port, "xinfo", "stream", stream))["last-generated-id"]
  return g["last-delivered-id"] == last and 0 or tonumber(g.lag) or -1, tonumber(g.pending)
end

-- SIGTERM to every watcher and worker still running (lists of them); each must exit 0.
function M.stop_all(lists)
  for _, list in ipairs(lists) do
    for _, w in ipairs(list) do
      if w.pid and not w:exit_code() then assert(w:stop(30) == 0, w:logtext()) end
    end
  end
end

-- Stop and remove; EVENTILATOR_SPEC_KEEP=1 keeps the folders (named on stderr) to read after a failure.
function M.cleanup(list)
  for _, w in ipairs(list) do
    if w.pid then pcall(w.stop, w, 30) end
    if os.getenv("EVENTILATOR_SPEC_KEEP") then
      io.stderr:write("[cluster] kept ", w.dir, "\n")
      if w.pid and not w:exit_code() then w:signal("KILL") end
    else
      w:cleanup()
    end
  end
end

return M
