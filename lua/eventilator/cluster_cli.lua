-- `eventilator work` and `eventilator cluster status [--json]` (contract
-- section 16, docs/cluster.md). The worker's loop is eventilator.cluster_work
-- under src/watch/cluster.c; this parses options and shows the cluster's state.
local cluster = require("eventilator.cluster")

local M = {}

local WORK_USAGE = "usage: eventilator work      (run the entries of cluster.stream; SIGTERM stops it)\n"
local USAGE = "usage: eventilator cluster status [--json]\n"

local function out(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
end

function M.work(args, host)
  if args[2] == "-h" or args[2] == "--help" then
    io.stdout:write(WORK_USAGE)
    return 0
  elseif args[2] then
    io.stderr:write("eventilator work: unknown option '", args[2], "'\n", WORK_USAGE)
    return 2
  end
  if not host.work then
    io.stderr:write("eventilator work: this binary was built without cluster mode\n")
    return 2
  end
  return host.work()
end

-- A heartbeat hash ({ id, "<ms> <json>", ... }) -> list of { id, age (s), alive, ...info }, by id.
local function members(flat, now_ms)
  local json = require("cjson")
  local list = {}
  for id, v in pairs(cluster.fields(flat)) do
    local ms, rest = tostring(v):match("^(%d+) (.*)$")
    local ok, info = pcall(json.decode, rest or "")
    local m = ok and type(info) == "table" and info or {}
    for key, x in pairs(m) do m[key] = math.tointeger(x) or x end -- cjson reads every number as a float
    m.id, m.age = id, ms and (now_ms - tonumber(ms)) / 1000 or math.huge
    m.alive = m.age <= cluster.ALIVE
    list[#list + 1] = m
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

-- Everything status shows, from one round trip: the report, or nil and why.
local function gather(s)
  local k = s.keys
  local c, err = require("eventilator.store").connect()
  if not c then return nil, err end
  local r, perr = c:pipeline({ { "TIME" }, { "XLEN", k.stream }, { "XINFO", "GROUPS", k.stream },
    { "XINFO", "CONSUMERS", k.stream, s.group }, { "HGETALL", k.watchers }, { "HGETALL", k.workers },
    { "XPENDING", k.stream, s.group, "-", "+", 1 }, { "XREVRANGE", k.stream, "+", "-", "COUNT", 1 } })
  c:close()
  if not r then return nil, perr end
  if type(r[1]) ~= "table" or r[1].err then return nil, tostring(r[1] and r[1].err) end
  local now_ms = tonumber(r[1][1]) * 1000 + tonumber(r[1][2]) // 1000
  local rep = { stream = s.stream, group = s.group, entries = tonumber(r[2]) or 0, lag = 0, pending = 0,
    watchers = members(r[5], now_ms), workers = members(r[6], now_ms) }
  for _, g in ipairs(type(r[3]) == "table" and not r[3].err and r[3] or {}) do
    local info = cluster.fields(g)
    if info.name == s.group then
      rep.found, rep.pending, rep.lag = true, info.pending, info.lag
      -- read up to the last entry: nothing waits, whatever the lag counter says (Redis 7.0 can
      -- leave it wrong across a failover or a restart from the AOF)
      local last = type(r[8]) == "table" and not r[8].err and r[8][1]
      if last and last[1] == info["last-delivered-id"] then rep.lag = 0 end
    end
  end
  local consumers = {}
  for _, cinfo in ipairs(type(r[4]) == "table" and not r[4].err and r[4] or {}) do
    local info = cluster.fields(cinfo)
    consumers[info.name] = info
  end
  for _, w in ipairs(rep.workers) do
    local ci = consumers[w.id] or {}
    w.pending, w.idle = ci.pending or 0, ci.idle and ci.idle / 1000
  end
  local oldest = type(r[7]) == "table" and not r[7].err and r[7][1]
  if oldest then rep.oldest = { id = oldest[1], worker = oldest[2], idle = oldest[3] / 1000 } end
  return rep
end

local function ago(s)
  if s == math.huge then return "never" end
  if s < 120 then return string.format("%.1f s ago", s) end
  if s < 7200 then return string.format("%.0f min ago", s / 60) end
  return string.format("%.1f h ago", s / 3600)
end

local function count_alive(list)
  local n = 0
  for _, m in ipairs(list) do if m.alive then n = n + 1 end end
  return n
end

local function print_text(rep, dead)
  out("stream   %s: %d entries; group %s: %s", rep.stream, rep.entries, rep.group,
    rep.found and string.format("%s not yet read (lag), %d pending%s", tostring(rep.lag or "?"), rep.pending,
      rep.oldest and string.format(" (oldest %s at %s, idle %.1f s)", rep.oldest.id, rep.oldest.worker,
        rep.oldest.idle) or "") or "not created yet (no worker has started)")
  out("watchers %d alive", count_alive(rep.watchers))
  for _, m in ipairs(rep.watchers) do
    out("  %-5s %s  seen %s  appended %s, already there %s, held %s", m.alive and "alive" or "gone", m.id,
      ago(m.age), tostring(m.appended or "?"), tostring(m.merged or "?"), tostring(m.held or "?"))
  end
  out("workers  %d alive", count_alive(rep.workers))
  for _, m in ipairs(rep.workers) do
    out("  %-5s %s  seen %s  pending %d%s  ran %s, failed %s, set aside %s, taken over %s%s%s",
      m.alive and "alive" or "gone", m.id, ago(m.age), m.pending,
      m.idle and string.format(" (idle %.1f s)", m.idle) or "", tostring(m.ran or "?"),
      tostring(m.failed or "?"), tostring(m.dead or "?"), tostring(m.claimed or "?"),
      m.running and ("  running " .. m.running) or "",
      (m.waiting or 0) > 0 and string.format("  %d waiting for their master's turn", m.waiting) or "")
  end
  out("dead     %d entr%s in %s", dead.n, dead.n == 1 and "y" or "ies", rep.stream .. ":dead")
  for _, l in ipairs(dead.lines) do out("  %s", l) end
end

local function status(o)
  local s, err = cluster.settings()
  if not s then
    io.stderr:write("eventilator cluster status: ", err or "cluster = { ... } is not set in the config", "\n")
    return 2
  end
  local rep, gerr = gather(s)
  if not rep then
    io.stderr:write("eventilator cluster status: the store does not answer: ", tostring(gerr), "\n")
    return 1
  end
  local list, n = cluster.dead(20)
  local dead = { n = n or 0, lines = {}, entries = list or {} }
  for i, d in ipairs(list or {}) do dead.lines[i] = cluster.dead_line(s, d) end
  local ok = dead.n == 0 and count_alive(rep.workers) > 0
  if o.json then
    local cli = require("eventilator.cli")
    for _, l in ipairs({ rep.watchers, rep.workers }) do
      for _, m in ipairs(l) do if m.age == math.huge then m.age = nil end end
      setmetatable(l, cli.array)
    end
    rep.dead, rep.dead_entries, rep.ok = dead.n, setmetatable(dead.entries, cli.array), ok
    out("%s", cli.encode(rep))
  else
    print_text(rep, dead)
    if count_alive(rep.workers) == 0 then out("problem: no worker is alive: entries wait") end
  end
  return ok and 0 or 1
end

function M.main(args, host)
  local o = {}
  if args[2] ~= "status" then
    if args[2] then io.stderr:write("eventilator cluster: unknown subcommand '", args[2], "'\n") end
    io.stderr:write(USAGE)
    return 2
  end
  for i = 3, #args do
    if args[i] == "--json" then
      o.json = true
    else
      io.stderr:write("eventilator cluster status: unknown option '", args[i], "'\n", USAGE)
      return 2
    end
  end
  if not host.load_config() then return 2 end
  return status(o)
end

return M
