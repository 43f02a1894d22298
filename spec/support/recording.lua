-- Record lines (contract sections 14 and 15) of made-up failovers, shaped
-- like the real one in ../shared/sentinel/corpus-failover.jsonl: what every
-- Sentinel of a constellation reports, in the order they report it, with
-- the handlers the shipped rules would run. For the history specs and
-- bench/history.sh.
--
--   local lines = recording.failover{ pod = "pod1", t0 = 1795600000, sentinels = { "pid:11", "pid:12", "pid:13" },
--                                     leader = 1, fail = { ["client-reconfig leader"] = "refused" } }
--   recording.write(path, lines)
local json = require("cjson")

local M = {}

local RUNID = "db8a66a699cf95e8a9fb0558d6ea8290153c8d1e"

-- The handlers the shipped rules run for an event (rule, outcome, ms).
local function handlers(name, role, err)
  local hs = { { rule = "/etc/redis/eventilator.d/00-log.lua:2", outcome = "ok", ms = 0.2 } }
  if name:find("^[+-][so]down$") then
    hs[2] = { rule = "/etc/redis/eventilator.d/20-warnings.lua:14", outcome = "ok", ms = 1.4 }
  elseif name == "client-reconfig" and role == "leader" then
    hs[2] = { rule = "/etc/redis/eventilator.d/10-failover-metrics.lua:6", outcome = "ok", ms = 2.1 }
  end
  if err then
    hs[#hs].outcome, hs[#hs].error, hs[#hs].ms = "failed", err, 5.0
  end
  return hs
end

-- One record line (a table). name is the event; text its description, or
-- for client-reconfig the role.
function M.line(t, sentinel, name, text, opts)
  opts = opts or {}
  local argv0, args = "eventilator", { name, text }
  if name == "client-reconfig" then
    argv0, args = "reconfigurator", { opts.pod, text, "start", opts.from_ip, tostring(opts.from_port),
                                      opts.to_ip, tostring(opts.to_port) }
  end
  local hs = opts.handlers or handlers(name, text, opts.err)
  local failed = false
  for _, h in ipairs(hs) do failed = failed or h.outcome == "failed" end
  return { argv0 = argv0, args = args, time = t, sentinel = sentinel, exit = failed and 1 or 0,
           handlers = hs, retry = opts.retry }
end

-- failover(o) -> lines, in the order of their times.
-- o: pod, t0, sentinels (labels), leader (index, default 1), ip, port (the
-- old master), to_port (the new), fail = { [event name] = error } ("client-reconfig leader" for a
-- reconfig call: that
-- call's last handler fails, and Sentinel retries it 30 s later: its
-- record has retry = true and the failed handler ok, the others skipped),
-- epoch, back (true: the master comes back before any failover: +sdown,
-- +odown, then -odown and -sdown; no election).
function M.failover(o)
  local ss, lead = o.sentinels, o.leader or 1
  local ip, port, to = o.ip or "10.0.0.1", o.port or 6379, o.to_port or (o.port or 6379) + 1
  local pod, epoch = o.pod or "pod1", tostring(o.epoch or 1)
  local master = string.format("master %s %s %d", pod, ip, port)
  local new_slave = string.format("slave %s:%d %s %d @ %s %s %d", ip, to, ip, to, pod, ip, port)
  local old_slave = string.format("slave %s:%d %s %d @ %s %s %d", ip, port, ip, port, pod, ip, to)
  local out = {}
  local function at(dt, i, name, text, extra)
    extra = extra or {}
    extra.pod, extra.from_ip, extra.from_port, extra.to_ip, extra.to_port = pod, ip, port, ip, to
    extra.err = o.fail and o.fail[name == "client-reconfig" and name .. " " .. text or name]
    out[#out + 1] = M.line(o.t0 + dt, ss[i], name, text, extra)
    if extra.err then -- Sentinel's retry of the failed call, script-retry-delay later
      local hs = handlers(name, text)
      for k = 1, #hs - 1 do hs[k].outcome, hs[k].ms = "skipped", nil end
      local retry = M.line(o.t0 + dt + 30, ss[i], name, text, { pod = pod, from_ip = ip, from_port = port,
        to_ip = ip, to_port = to, handlers = hs, retry = true })
      out[#out + 1] = retry
    end
  end
  for i = 1, #ss do at(0.01 * i, i, "+sdown", master) end
  if o.back then
    for i = 1, #ss do at(0.5 + 0.01 * i, i, "+odown", master .. " #quorum 2/2") end
    for i = 1, #ss do at(3 + 0.01 * i, i, "-odown", master) end
    for i = 1, #ss do at(3.1 + 0.01 * i, i, "-sdown", master) end
  else
    for i = 1, #ss do
      at(0.1 + 0.01 * i, i, "+odown", master .. string.format(" #quorum %d/2", #ss))
      at(0.2 + 0.01 * i, i, "+new-epoch", epoch)
      if i ~= lead then at(0.3 + 0.01 * i, i, "+vote-for-leader", RUNID .. " " .. epoch) end
    end
    at(0.25, lead, "+try-failover", master)
    at(0.4, lead, "+elected-leader", master)
    at(0.41, lead, "+failover-state-select-slave", master)
    at(0.5, lead, "+selected-slave", new_slave)
    at(1.2, lead, "+promoted-slave", new_slave)
    at(1.21, lead, "+failover-state-reconf-slaves", master)
    at(1.22, lead, "client-reconfig", "leader")
    for i = 1, #ss do
      if i ~= lead then
        at(1.5 + 0.01 * i, i, "+config-update-from", string.format("sentinel %s %s 26379 @ %s %s %d", RUNID, ip, pod,
          ip, port))
        at(1.51 + 0.01 * i, i, "+switch-master", string.format("%s %s %d %s %d", pod, ip, port, ip, to))
        at(1.52 + 0.01 * i, i, "client-reconfig", "observer")
      end
    end
    at(1.8, (lead % #ss) + 1, "-odown", master)
    at(2.5, lead, "+failover-end", master)
    at(2.51, lead, "+switch-master", string.format("%s %s %d %s %d", pod, ip, port, ip, to))
    for i = 1, #ss do at(3.5 + 0.01 * i, i, "+sdown", old_slave) end
  end
  table.sort(out, function(a, b) return a.time < b.time end)
  return out
end

-- Calls of a quiet time: a replica down and back, not a failover.
function M.quiet(o)
  local text = string.format("slave 10.0.0.3:6379 10.0.0.3 6379 @ %s 10.0.0.1 6379", o.pod or "pod1")
  return { M.line(o.t0, o.sentinels[1], "+sdown", text), M.line(o.t0 + 5, o.sentinels[1], "-sdown", text) }
end

function M.encode(line)
  return (json.encode(line):gsub("\\/", "/"))
end

-- Write lines (tables) to path, one JSON object a line.
function M.write(path, lines)
  local f = assert(io.open(path, "wb"))
  for _, l in ipairs(lines) do f:write(M.encode(l), "\n") end
  f:close()
end

return M
