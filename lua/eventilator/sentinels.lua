-- eventilator sentinels status | register | unregister | doctor (contract section 11).
-- Policy only: the Sentinel client and the host facts come from the C binding
-- eventilator.sentinel (host.sentinel()), so this file decides what to ask,
-- what counts as wrong, and how to say it.
local M = {}

local USAGE = [[
usage: eventilator sentinels status     [--sentinel HOST:PORT]... [--master NAME]... [--timeout S] [--json]
       eventilator sentinels register   [--sentinel HOST:PORT]... [--master NAME]... [--timeout S]
                                        [--notification PATH] [--reconfig PATH] [--dry-run]
       eventilator sentinels unregister [--sentinel HOST:PORT]... [--master NAME]... [--timeout S] [--dry-run]
       eventilator sentinels doctor     [--user NAME] [--notification PATH] [--reconfig PATH] [--unit FILE]
Seeds default to watch.sentinels (HOST alone: port 26379); watch.username / watch.password / watch.timeout
are used to log in.
]]

local function out(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
end

local function usage_error(msg)
  io.stderr:write("eventilator sentinels: ", msg, "\n", USAGE)
  return 2
end

-- ------------------------------------------------------------------ options

local FLAGS = { json = true, ["dry-run"] = true }
local VALUES = { timeout = true, notification = true, reconfig = true, user = true, unit = true }
local LISTS = { sentinel = true, master = true }
local ALLOWED = {
  status = { sentinel = 1, master = 1, timeout = 1, json = 1 },
  register = { sentinel = 1, master = 1, timeout = 1, notification = 1, reconfig = 1, ["dry-run"] = 1 },
  unregister = { sentinel = 1, master = 1, timeout = 1, ["dry-run"] = 1 },
  doctor = { user = 1, notification = 1, reconfig = 1, unit = 1 },
}

-- args: the subcommand's arguments (after "sentinels <cmd>"). -> opts | nil, err
local function parse(cmd, args)
  local o = { sentinel = {}, master = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if not name or not ALLOWED[cmd][name] then
      return nil, string.format("%s: unknown option '%s'", cmd, a)
    end
    if FLAGS[name] then
      if value then return nil, "--" .. name .. " takes no value" end
      o[name] = true
    else
      if not value then
        i = i + 1
        value = args[i]
        if not value then return nil, "--" .. name .. " needs a value" end
      end
      if LISTS[name] then
        o[name][#o[name] + 1] = value
      elseif VALUES[name] then
        o[name] = value
      end
    end
    i = i + 1
  end
  if o.timeout then
    local t = tonumber(o.timeout)
    if not t or t <= 0 or t > 3600 then return nil, "--timeout: expected seconds above 0" end
    o.timeout = t
  end
  for _, k in ipairs({ "notification", "reconfig" }) do
    if o[k] and o[k]:sub(1, 1) ~= "/" then
      return nil, "--" .. k .. ": expected an absolute path (Sentinel runs it from its own folder)"
    end
  end
  return o
end

-- Login and timeout: watch mode's settings (contract section 10), flags first.
local function connect_opts(config, o)
  local w = config.watch or {}
  local t = { timeout = o.timeout or w.timeout or 2 }
  if w.username and w.username ~= "" then t.username = w.username end
  if w.password and w.password ~= "" then t.password = w.password end
  return t
end

local function seeds_of(config, o)
  if #o.sentinel > 0 then return o.sentinel end
  local w = config.watch or {}
  return w.sentinels or {}
end

local function masters_filter(config, o)
  if #o.master > 0 then return o.master end
  local w = config.watch or {}
  return w.masters
end

-- "127.0.0.1:1: Connection refused" about 127.0.0.1:1 -> "Connection refused"
local function plain(addr, e)
  if e and e:sub(1, #addr + 2) == addr .. ": " then return e:sub(#addr + 3) end
  return e
end

-- A flat { k1, v1, k2, v2 } reply as a map.
local function kv(reply)
  local t = {}
  if type(reply) ~= "table" then return t end
  for i = 1, #reply - 1, 2 do t[reply[i]] = reply[i + 1] end
  return t
end

-- ------------------------------------------------------------------ JSON

-- Arrays are marked, so an empty one is [] and not {}.
local ARRAY = {}
local function array(t)
  return setmetatable(t or {}, ARRAY)
end

local function encode(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    if getmetatable(v) == ARRAY then
      for i = 1, #v do parts[i] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = encode(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return (require("cjson").encode(v):gsub("\\/", "/"))
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  end
  return "null"
end

-- ------------------------------------------------------------------ status

local function parse_info(text)
  local t = {}
  for k, v in tostring(text):gmatch("([%w_]+):([^\r\n]*)") do t[k] = v end
  return t
end

local function split_flags(s)
  local t = array()
  for f in tostring(s or ""):gmatch("[^,]+") do t[#t + 1] = f end
  return t
end

-- Which master a pending script is about: the argv names it as a word.
local function mentions(argv, name)
  for i = 2, #argv do
    for w in tostring(argv[i]):gmatch("%S+") do
      if w == name then return true end
    end
  end
  return false
end

-- What a Sentinel sent where a string belongs, checked: the string, or nil
-- and one line in `bad` ("<where>: <field> is a number, not a string").
local KIND = { number = "a number", table = "a list", boolean = "nil" }
local function string_field(bad, where, field, v)
  if v == nil or type(v) == "string" then return v end
  bad[#bad + 1] = string.format("%s: %s is %s, not a string", where, field, KIND[type(v)] or type(v))
  return nil
end

-- The words of a pending script's argv, each a string (or "?").
local function words(bad, where, argv)
  local t = array()
  if argv ~= nil and type(argv) ~= "table" then
    string_field(bad, where, "argv", argv)
    return t
  end
  for i, w in ipairs(argv or {}) do t[i] = string_field(bad, where, "argv[" .. i .. "]", w) or "?" end
  return t
end

local function pending_of(rec, bad, pending)
  for _, p in ipairs(type(pending) == "table" and pending or {}) do
    local f = kv(p)
    -- Sentinel's retry-num counts attempts started, and goes up when an
    -- attempt starts: a first run in progress already shows 1. The retries
    -- are the attempts that failed, so a running job has one fewer.
    local attempts = tonumber(f["retry-num"]) or 0
    local state = string_field(bad, rec.addr .. ", a pending script", "flags", f.flags)
    local running = state == "running"
    rec.pending[#rec.pending + 1] = {
      argv = words(bad, rec.addr .. ", a pending script", f.argv), state = state,
      pid = tonumber(f.pid), attempts = attempts,
      retries = math.max(0, attempts - (running and 1 or 0)),
      run_time_ms = tonumber(f["run-time"]), run_delay_ms = tonumber(f["run-delay"]),
    }
  end
end

-- SENTINEL MASTER <name>'s reply as a row.
local function master_of(rec, bad, name, r, e)
  local m = { name = name }
  if r == nil then
    m.monitored, m.error = false, e
    return m
  end
  local where = string.format("%s, master %s", rec.addr, name)
  if type(r) ~= "table" then
    bad[#bad + 1] = where .. ": SENTINEL MASTER is not a list"
    r = {}
  end
  local f = kv(r)
  local ip, port = string_field(bad, where, "ip", f.ip), string_field(bad, where, "port", f.port)
  m.monitored = true
  m.address = ip and (ip:find(":") and "[" .. ip .. "]" or ip) .. ":" .. tostring(port)
  m.flags = split_flags(string_field(bad, where, "flags", f.flags))
  m.quorum = tonumber(f.quorum)
  m.notification_script = string_field(bad, where, "notification-script", f["notification-script"])
  m.client_reconfig_script = string_field(bad, where, "client-reconfig-script", f["client-reconfig-script"])
  local n = 0
  for _, p in ipairs(rec.pending) do
    if mentions(p.argv, name) then n = n + 1 end
  end
  m.pending_scripts = n
  return m
end

-- One Sentinel's view (its answers to the commands `status` asked all at
-- once): its masters (those of the fleet), scripts, queue. What it sent of
-- the wrong type goes to `bad`, a line each.
local function inspect(s, answer, masters, bad)
  local rec = { addr = s.addr, reachable = s.reachable, error = s.err, masters = array(), pending = array() }
  rec.error = plain(s.addr, rec.error)
  if not s.reachable then return rec end
  local replies, errors = answer.replies, answer.errors
  if answer.err then
    rec.reachable, rec.error = false, plain(s.addr, answer.err)
    return rec
  end
  local info = replies[1]
  if type(info) == "string" then
    info = parse_info(info)
    rec.running_scripts = tonumber(info.sentinel_running_scripts)
    rec.queued_scripts = tonumber(info.sentinel_scripts_queue_length)
    rec.tilt = info.sentinel_tilt == "1"
  elseif info then
    string_field(bad, s.addr, "INFO sentinel", info)
  end
  pending_of(rec, bad, replies[2])
  for i, name in ipairs(masters) do
    local r = replies[2 + i]
    rec.masters[#rec.masters + 1] = master_of(rec, bad, name, r ~= false and r or nil, errors[2 + i])
  end
  return rec
end

-- Every reachable Sentinel asked at once (INFO, PENDING-SCRIPTS, MASTER <m>
-- for each master): N silent ones cost one timeout, not N.
local function ask_all(S, fleet, copts)
  local commands = { { "INFO", "sentinel" }, { "SENTINEL", "PENDING-SCRIPTS" } }
  for _, name in ipairs(fleet.masters) do commands[#commands + 1] = { "SENTINEL", "MASTER", name } end
  local args, at = { sentinels = {}, commands = commands }, {}
  for k, v in pairs(copts) do args[k] = v end
  for _, s in ipairs(fleet.sentinels) do
    if s.reachable then
      args.sentinels[#args.sentinels + 1] = s.addr
      at[s.addr] = #args.sentinels
    end
  end
  local answers = #args.sentinels > 0 and S.ask(args) or {}
  return function(addr) return answers[at[addr]] or { replies = {}, errors = {} } end
end

-- Group "value -> list of who" for a message, in a stable order.
local function groups(map)
  local keys, parts = {}, {}
  for k in pairs(map) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = string.format("%s (%s)", k, table.concat(map[k], ", ")) end
  return table.concat(parts, "; "), #keys
end

-- Why a Sentinel gave no report: "unreachable: <why>", or what it is when it
-- answered but is no Sentinel (a data node on the port given).
local function why_not(err)
  err = err or "?"
  if err:find("^not a Sentinel") then return err end
  return "unreachable: " .. err
end

local function problems_of(report)
  local p = array()
  local function add(fmt, ...) p[#p + 1] = string.format(fmt, ...) end
  local scripts = { notification_script = {}, client_reconfig_script = {} }
  local addresses = {}
  for _, s in ipairs(report.sentinels) do
    if not s.reachable then
      add("%s: %s", s.addr, why_not(s.error))
    else
      for _, m in ipairs(s.masters) do
        if not m.monitored then
          add("%s: does not monitor master %s (%s)", s.addr, m.name, m.error or "?")
        else
          for _, k in ipairs({ "notification_script", "client_reconfig_script" }) do
            local v = m[k]
            local label = k:gsub("_", "-")
            if not v or v == "" then
              add("%s, master %s: no %s", s.addr, m.name, label)
            else
              scripts[k][v] = scripts[k][v] or {}
              table.insert(scripts[k][v], s.addr .. " " .. m.name)
            end
          end
          addresses[m.name] = addresses[m.name] or {}
          local a = m.address or "?"
          addresses[m.name][a] = addresses[m.name][a] or {}
          table.insert(addresses[m.name][a], s.addr)
        end
      end
      for _, j in ipairs(s.pending) do
        if j.retries > 0 then
          add("%s: script %s retry %d: %s", s.addr, j.state == "running" and "running its" or "waiting on",
            j.retries, table.concat(j.argv, " "))
        end
      end
    end
  end
  for _, k in ipairs({ "notification_script", "client_reconfig_script" }) do
    local text, n = groups(scripts[k])
    if n > 1 then add("%s differs between Sentinels: %s", (k:gsub("_", "-")), text) end
  end
  local names = {}
  for name in pairs(addresses) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local text, n = groups(addresses[name])
    if n > 1 then add("master %s: Sentinels disagree on its address: %s", name, text) end
  end
  return p
end

-- Discovery stops at 64 Sentinels (the cap on a fleet, docs/sentinels.md).
local function capped_line(fleet)
  return string.format("more than %d Sentinels named: %d more were not contacted (the cap on a fleet)",
    #fleet.sentinels, fleet.capped)
end

local function discover(S, config, o)
  local seeds = seeds_of(config, o)
  if #seeds == 0 then
    return nil, "no Sentinel to start from: give --sentinel HOST:PORT or set watch.sentinels in the config", 2
  end
  local copts = connect_opts(config, o)
  local args = { seeds = seeds, masters = masters_filter(config, o) }
  for k, v in pairs(copts) do args[k] = v end
  local fleet, err = S.discover(args)
  if not fleet then return nil, err, 2 end
  table.sort(fleet.masters)
  return fleet, copts
end

local function print_table(report)
  local head = { "SENTINEL", "MASTER", "ADDRESS", "FLAGS", "QUORUM", "NOTIFICATION-SCRIPT",
    "CLIENT-RECONFIG-SCRIPT", "RUNNING", "QUEUED", "PENDING" }
  local rows = { head }
  for _, s in ipairs(report.sentinels) do
    if not s.reachable then
      rows[#rows + 1] = { s.addr, "-", why_not(s.error) }
    elseif #s.masters == 0 then
      rows[#rows + 1] = { s.addr, "-", "(no masters)" }
    end
    for _, m in ipairs(s.reachable and s.masters or {}) do
      if m.monitored then
        rows[#rows + 1] = { s.addr, m.name, m.address or "-", table.concat(m.flags, ","),
          tostring(m.quorum or "-"),
          m.notification_script or "-", m.client_reconfig_script or "-", tostring(s.running_scripts or "-"),
          tostring(s.queued_scripts or "-"), tostring(m.pending_scripts or 0) }
      else
        rows[#rows + 1] = { s.addr, m.name, "not monitored" }
      end
    end
  end
  local width = {}
  for _, r in ipairs(rows) do
    for i = 1, #r - 1 do width[i] = math.max(width[i] or 0, #r[i]) end
  end
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do
      cells[i] = i < #r and c .. string.rep(" ", width[i] - #c) or c
    end
    out("%s", table.concat(cells, "  "))
  end
  for _, s in ipairs(report.sentinels) do
    if s.reachable and #s.pending > 0 then
      out("")
      out("pending scripts on %s (SENTINEL PENDING-SCRIPTS):", s.addr)
      for _, j in ipairs(s.pending) do
        out("  %-9s retries=%d  %s", j.state or "?", j.retries, table.concat(j.argv, " "))
      end
    end
  end
  out("")
  for _, n in ipairs(report.notes) do out("note: %s", n) end
  if #report.problems == 0 then
    out("all %d Sentinel(s) consistent", #report.sentinels)
  else
    out("problems:")
    for _, p in ipairs(report.problems) do out("  - %s", p) end
  end
end

local function status(S, config, o)
  local fleet, copts, code = discover(S, config, o)
  if not fleet then
    io.stderr:write("eventilator sentinels status: ", copts, "\n")
    return code
  end
  local report = { sentinels = array(), masters = array(fleet.masters) }
  local answer, bad = ask_all(S, fleet, copts), {}
  for _, s in ipairs(fleet.sentinels) do
    report.sentinels[#report.sentinels + 1] = inspect(s, answer(s.addr), fleet.masters, bad)
  end
  report.problems = problems_of(report)
  for _, b in ipairs(bad) do report.problems[#report.problems + 1] = b end
  if fleet.capped > 0 then
    report.problems[#report.problems + 1] = capped_line(fleet)
  end
  local found = {}
  for _, m in ipairs(fleet.masters) do found[m] = true end
  for _, m in ipairs(masters_filter(config, o) or {}) do
    if not found[m] then
      report.problems[#report.problems + 1] = string.format("master %s: no Sentinel reached monitors it", m)
    end
  end
  local dead, any = require("eventilator.cluster").dead_lines() -- cluster mode's set-aside entries
  if any then table.move(dead, 1, #dead, #report.problems + 1, report.problems) end
  report.ok = #report.problems == 0
  -- Worth knowing, but not wrong wiring: TILT passes by itself after 30 s.
  report.notes = array()
  for _, s in ipairs(report.sentinels) do
    if s.tilt then
      report.notes[#report.notes + 1] = string.format("%s: in TILT mode (its clock jumped or it was "
        .. "blocked); it starts no failover until it leaves it, 30 s after the last jump", s.addr)
    end
  end
  if o.json then
    out("%s", encode(report))
  else
    print_table(report)
  end
  return report.ok and 0 or 1
end

-- ------------------------------------------------------------------ register

-- This installation's eventilator and reconfigurator: the folder whose
-- eventilator hands over to the running full runtime
-- (<bindir>/../libexec/eventilator/eventilator-full, as handover.c does).
-- Links are resolved, so Sentinel gets the real place of the file (what its
-- unit's ExecPaths judge), not a /usr/bin link.
local function installation(S)
  local exe = S.exe()
  if not exe then return nil, "cannot read /proc/self/exe" end
  local candidates = {}
  local f = io.open("/proc/self/cmdline", "rb")
  local argv0 = f and f:read("a"):match("^([^%z]*)")
  if f then f:close() end
  if argv0 and argv0:find("/", 1, true) then
    candidates[#candidates + 1] = argv0
  elseif argv0 and argv0 ~= "" then
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
      candidates[#candidates + 1] = dir .. "/" .. argv0
    end
  end
  local root = exe:match("^(.*)/[^/]+/[^/]+/[^/]+$")
  if root then candidates[#candidates + 1] = root .. "/bin/eventilator" end
  for _, c in ipairs(candidates) do
    local real = S.realpath(c)
    local dir = real and real:match("^(.*)/[^/]+$")
    if dir and S.realpath(dir .. "/../libexec/eventilator/eventilator-full") == exe then
      return dir .. "/eventilator", dir .. "/reconfigurator"
    end
  end
  return nil, "cannot find this installation's eventilator next to " .. exe
    .. "; give --notification and --reconfig"
end

-- A value as sentinel.conf reads it (sdssplitargs): quoted when it must be.
local function conf_quote(s)
  if s ~= "" and not s:find('[%s"\'\\]') then return s end
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

local function is_denied(err)
  return tostring(err):find("deny%-scripts%-reconfig") ~= nil
end

-- Nothing can be executed below /dev/null (not a folder): access(X_OK) fails
-- there on every host, so Sentinel refuses this path whatever its settings.
local PROBE = "/dev/null/eventilator-dry-run"

-- Would this Sentinel refuse a script (deny-scripts-reconfig yes)? For a dry
-- run, so it changes nothing. -> true | false | nil, why
-- Redis 7.0 does not show deny-scripts-reconfig (SENTINEL CONFIG GET knows
-- only resolve-hostnames, announce-*, sentinel-user/pass), so it is asked of
-- one master with a path that must fail: Sentinel checks deny-scripts-reconfig
-- before anything else and returns, then the path (access(2)) before it
-- changes anything, and it saves its config only after a change (sentinel.c,
-- sentinelSetCommand, 5.0 to 7.4). The answer says which check stopped it.
local function refuses_scripts(c, master, current)
  local r = c:call("SENTINEL", "CONFIG", "GET", "deny-scripts-reconfig")
  local v = kv(r)["deny-scripts-reconfig"]
  if v == "yes" or v == "no" then return v == "yes" end
  local ok, e = c:call("SENTINEL", "SET", master, "notification-script", PROBE)
  if ok then -- no Sentinel takes it; should one ever, it gets its own path back
    c:call("SENTINEL", "SET", master, "notification-script", current or "")
    return nil, "it took " .. PROBE .. " as a script path"
  end
  if is_denied(e) then return true end
  if tostring(e):find("non existing or non executable", 1, true) then return false end
  return nil, e
end

-- register (want = paths) or unregister (want = "" for both).
local function set_scripts(S, config, o, clear)
  local want = { ["notification-script"] = "", ["client-reconfig-script"] = "" }
  if not clear then
    local n, r = o.notification, o.reconfig
    if not (n and r) then
      local dn, dr = installation(S)
      if not dn then
        io.stderr:write("eventilator sentinels register: ", dr, "\n")
        return 2
      end
      n, r = n or dn, r or dr
    end
    want["notification-script"], want["client-reconfig-script"] = n, r
  end
  local fleet, copts, code = discover(S, config, o)
  local verb = clear and "unregister" or "register"
  if not fleet then
    io.stderr:write("eventilator sentinels ", verb, ": ", copts, "\n")
    return code
  end
  local only = {}
  for _, m in ipairs(fleet.masters) do only[m] = true end
  if fleet.capped > 0 then out("note: %s", capped_line(fleet)) end
  if #fleet.masters == 0 then out("no master found on the Sentinels reached: nothing to %s", verb) end
  local failed = 0
  for _, m in ipairs(masters_filter(config, o) or {}) do
    if not only[m] then
      failed = failed + 1
      out("%s  FAILED: no Sentinel reached monitors it", m)
    end
  end
  local KINDS = { "notification-script", "client-reconfig-script" }
  for _, s in ipairs(fleet.sentinels) do
    local c, err
    if s.reachable then c, err = S.connect(s.addr, copts) end
    if not c then
      failed = failed + 1
      out("%s  FAILED: %s", s.addr, why_not(plain(s.addr, err or s.err)))
      goto next
    end
    do
      local masters, merr = c:call("SENTINEL", "MASTERS")
      if not masters then
        failed = failed + 1
        out("%s  FAILED: SENTINEL MASTERS: %s", s.addr, merr)
        c:close()
        goto next
      end
      local denied = {}
      local refuses, unknown -- dry run: asked at the first master (the setting is the Sentinel's)
      table.sort(masters, function(x, y) return tostring(kv(x).name) < tostring(kv(y).name) end)
      for _, entry in ipairs(masters) do
        local m = kv(entry)
        local name = m.name
        if not name or not only[name] then goto continue end
        if o["dry-run"] then
          if refuses == nil and unknown == nil then
            refuses, unknown = refuses_scripts(c, name, m["notification-script"])
            if refuses == nil then
              failed = failed + 1
              out("%s  FAILED: cannot tell whether it takes scripts at runtime (deny-scripts-reconfig): %s",
                s.addr, unknown or "?")
            end
          end
          if refuses then
            denied[#denied + 1] = { name = name, current = m }
            out("%s  %s  would be refused: deny-scripts-reconfig is yes (now: notification-script %s, "
              .. "client-reconfig-script %s)", s.addr, name, m["notification-script"] or "none",
              m["client-reconfig-script"] or "none")
          else
            for _, k in ipairs(KINDS) do
              out("%s  %s  would set %s %s (now: %s)", s.addr, name, k, want[k] == "" and '""' or want[k],
                m[k] or "none")
            end
          end
          goto continue
        end
        for _, k in ipairs(KINDS) do
          local ok, e, dead = c:call("SENTINEL", "SET", name, k, want[k])
          if not ok and is_denied(e) then
            denied[#denied + 1] = { name = name, current = m }
            break
          elseif not ok then
            failed = failed + 1
            out("%s  %s  FAILED: SENTINEL SET %s: %s", s.addr, name, k, e)
            if dead then break end
          end
        end
        if denied[#denied] and denied[#denied].name == name then goto continue end
        -- read back what the Sentinel now has
        do
          local back, e = c:call("SENTINEL", "MASTER", name)
          local b = kv(back)
          if not back then
            failed = failed + 1
            out("%s  %s  FAILED: reading back: %s", s.addr, name, e)
          else
            local bad = {}
            for _, k in ipairs(KINDS) do
              if (b[k] or "") ~= want[k] then
                bad[#bad + 1] = string.format("%s is %s", k, b[k] or "unset")
              end
            end
            if #bad > 0 then
              failed = failed + 1
              out("%s  %s  FAILED: read back: %s", s.addr, name, table.concat(bad, ", "))
            elseif clear then
              out("%s  %s  cleared (read back: no scripts)", s.addr, name)
            else
              out("%s  %s  set (read back): notification-script %s, client-reconfig-script %s", s.addr, name,
                want["notification-script"], want["client-reconfig-script"])
            end
          end
        end
        ::continue::
      end
      c:close()
      if #denied > 0 then
        failed = failed + #denied
        out("%s  %s: deny-scripts-reconfig is yes, so scripts cannot be %s at runtime.", s.addr,
          o["dry-run"] and "WOULD BE REFUSED" or "REFUSED", clear and "cleared" or "set")
        if clear then
          out("# remove these lines from the sentinel.conf of %s, then restart it:", s.addr)
          for _, d in ipairs(denied) do
            for _, k in ipairs(KINDS) do
              if d.current[k] then out("sentinel %s %s %s", k, d.name, conf_quote(d.current[k])) end
            end
          end
        else
          out("# add these lines to the sentinel.conf of %s, then restart it:", s.addr)
          for _, d in ipairs(denied) do
            for _, k in ipairs(KINDS) do out("sentinel %s %s %s", k, d.name, conf_quote(want[k])) end
          end
        end
      end
    end
    ::next::
  end
  if failed > 0 then
    out("%d Sentinel/master pair(s) %s %s", failed, o["dry-run"] and "would not be" or "not",
      clear and "cleared" or "set")
    return 1
  end
  return 0
end

-- ------------------------------------------------------------------ main

-- args: the whole argv after the program name ({ "sentinels", cmd, ... }).
function M.main(args, host)
  local cmd = args[2]
  if cmd == nil or cmd == "-h" or cmd == "--help" or cmd == "help" then
    io.stdout:write(USAGE)
    return cmd == nil and 2 or 0
  end
  if not ALLOWED[cmd] then return usage_error(string.format("unknown subcommand '%s'", cmd)) end
  local rest = {}
  for i = 3, #args do rest[#rest + 1] = args[i] end
  local o, err = parse(cmd, rest)
  if not o then return usage_error(err) end
  local S = host.sentinel()
  if cmd == "doctor" then
    return require("eventilator.sentinels_doctor").run(S, host, o, installation, out)
  end
  local config = host.load_config()
  if not config then return 2 end
  if cmd == "status" then return status(S, config, o) end
  return set_scripts(S, config, o, cmd == "unregister")
end

return M
