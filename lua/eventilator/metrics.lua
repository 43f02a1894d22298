-- eventilator.metrics: failover, failed-failover and warning metrics in
-- Redis, in the key layout of docs/metrics.md (the Go eventilator's names, so
-- existing dashboards and redis-cli habits keep working).
--
-- Every recorded event is one MULTI/EXEC sent in one round trip: either all
-- of its keys are written or none are, and a retry by Sentinel (exit 1) can
-- never leave half a record behind. Any Redis trouble (connect, auth, an
-- error reply, an aborted EXEC) returns nil, err so the handler fails and
-- Sentinel runs the script again.
local M = {}

-- The settings this module reads (config.metrics, config.warnings): name, type,
-- default. The host checks and merges them, from the schema tools/derive.lua
-- generates out of this block at build time; a comment, so that loading the
-- module costs nothing for it (docs/config.md lists them).
--[==[settings
metrics = { { "enabled", "boolean", true } }   -- failovers (reconfigurator mode)
warnings = { { "enabled", "boolean", false } } -- warnings, failed failovers
]==]

-- Day sets (`pods-with-failovers:Y:M:D`, `pods-with-warnings:Y:M:D`) live
-- 60 days.
M.DAY_TTL = 5184000

-- windows(ts) -> { "Y", "Y:M", "Y:M:D", "Y:M:D:H", "Y:M:D:H:Mi" }, in local
-- time, without zero padding.
local function windows(ts)
  local t = os.date("*t", ts)
  local y = tostring(t.year)
  local ym = y .. ":" .. t.month
  local ymd = ym .. ":" .. t.day
  local ymdh = ymd .. ":" .. t.hour
  return { y, ym, ymd, ymdh, ymdh .. ":" .. t.min }
end
M.windows = windows

-- The call's time in whole seconds, as a string.
local function stamp(ev)
  -- `// 1` rather than math.floor: a call that records a failover need not open `math`
  return ("%d"):format((tonumber(ev.time) or os.time()) // 1)
end

local function need_pod(ev)
  if type(ev) ~= "table" then error("metrics: ev must be a table", 3) end
  if type(ev.pod) ~= "string" or ev.pod == "" then
    return nil, string.format("metrics: event %s has no pod", tostring(ev.name))
  end
  return ev.pod
end

-- Run cmds as one MULTI/EXEC in one round trip. Returns true, or nil, err.
local function transact(cmds)
  local client, err = require("eventilator.store").connect()
  if not client then return nil, "metrics: " .. tostring(err) end
  local batch = { { "MULTI" } }
  for _, c in ipairs(cmds) do batch[#batch + 1] = c end
  batch[#batch + 1] = { "EXEC" }
  local replies, perr = client:pipeline(batch)
  client:close()
  if not replies then return nil, "metrics: " .. tostring(perr) end
  -- Queueing errors (a wrong command) show up on MULTI or the QUEUED slots
  -- and make EXEC fail with EXECABORT; report the first cause.
  for i = 1, #batch - 1 do
    local r = replies[i]
    if type(r) == "table" and r.err then
      return nil, string.format("metrics: redis: %s: %s", batch[i][1], r.err)
    end
  end
  local exec = replies[#batch]
  if type(exec) == "table" and exec.err then
    return nil, "metrics: redis: EXEC: " .. exec.err
  end
  if type(exec) ~= "table" then
    return nil, "metrics: redis: EXEC was aborted (got " .. tostring(exec) .. ")"
  end
  for i = 1, #cmds do
    local r = exec[i]
    if type(r) == "table" and r.err then
      return nil, string.format("metrics: redis: %s %s: %s", cmds[i][1], tostring(cmds[i][2]), r.err)
    end
  end
  return true
end

-- metrics.record_failover(ev) -> true | nil, err
-- ev: a client-reconfig event (pod, new_master {ip, port}, time). Records
-- the failover of ev.pod to ev.new_master.
function M.record_failover(ev)
  local pod, err = need_pod(ev)
  if not pod then return nil, err end
  local nm = ev.new_master
  if type(nm) ~= "table" or not nm.ip then
    return nil, string.format("metrics: event %s has no new master", tostring(ev.name))
  end
  local ts = stamp(ev)
  local w = windows(tonumber(ts))
  local cmds = {
    { "SADD", "pods-with-failovers", pod },
    { "SADD", "failovers:" .. pod .. ":timestamps", ts },
    { "ZADD", "failovers:" .. pod .. ":log", ts, nm.ip .. ":" .. tostring(nm.port) .. "@" .. ts },
  }
  for _, win in ipairs(w) do
    cmds[#cmds + 1] = { "HINCRBY", "failovers:aggregated", win, "1" }
    cmds[#cmds + 1] = { "HINCRBY", "failovers:success:" .. pod .. ":counters", win, "1" }
    cmds[#cmds + 1] = { "SADD", "failovers:" .. win, pod }
    cmds[#cmds + 1] = { "ZADD", "failovers:aggregated-by-time:" .. win, ts, pod }
  end
  local day = "pods-with-failovers:" .. w[3]
  cmds[#cmds + 1] = { "SADD", day, pod }
  cmds[#cmds + 1] = { "EXPIRE", day, tostring(M.DAY_TTL) }
  return transact(cmds)
end

-- metrics.record_failure(ev) -> true | nil, err
-- ev: -failover-abort-no-good-slave or -failover-abort-slave-timeout.
function M.record_failure(ev)
  local pod, err = need_pod(ev)
  if not pod then return nil, err end
  local ts = stamp(ev)
  local cmds = {
    { "SADD", "pods-with-failed-failovers", pod },
    { "SADD", "failovers:failures:" .. pod .. ":timestamps", ts },
    { "ZADD", "failovers:" .. pod .. ":faillog", ts, tostring(ev.name) .. "@" .. ts },
  }
  for _, win in ipairs(windows(tonumber(ts))) do
    cmds[#cmds + 1] = { "HINCRBY", "failovers:failures:aggregated", win, "1" }
    cmds[#cmds + 1] = { "HINCRBY", "failovers:failures:" .. pod .. ":counters", win, "1" }
    cmds[#cmds + 1] = { "SADD", "failovers:failures:" .. win, pod }
  end
  return transact(cmds)
end

-- metrics.record_warning(ev) -> true | nil, err
-- ev: +sdown, -sdown, +odown or -odown; EVENT in the keys is ev.name with
-- its sign.
function M.record_warning(ev)
  local pod, err = need_pod(ev)
  if not pod then return nil, err end
  local ts = stamp(ev)
  local event = tostring(ev.name)
  local w = windows(tonumber(ts))
  local cmds = {
    { "SADD", "pods-with-warnings", pod },
    { "SADD", "sentinel:warnings:" .. event .. ":" .. pod .. ":timestamps", ts },
    { "ZADD", "warnings:" .. event .. ":faillog", ts, pod },
  }
  for _, win in ipairs(w) do
    cmds[#cmds + 1] = { "HINCRBY", "sentinel:warnings:aggregated", win, "1" }
    cmds[#cmds + 1] = { "HINCRBY", "sentinel:warnings:" .. event .. ":aggregated", win, "1" }
    cmds[#cmds + 1] = { "HINCRBY", "sentinel:warnings:" .. event .. ":" .. pod .. ":counters", win, "1" }
    cmds[#cmds + 1] = { "SADD", "sentinel:warnings:" .. win, pod }
    cmds[#cmds + 1] = { "ZADD", "sentinel:warnings-by-time:" .. win, ts, pod }
  end
  local day = "pods-with-warnings:" .. w[3]
  cmds[#cmds + 1] = { "SADD", day, pod }
  cmds[#cmds + 1] = { "EXPIRE", day, tostring(M.DAY_TTL) }
  return transact(cmds)
end

return M
