-- eventilator check / eventilator test: the subcommands of contract section 8.
-- They drive the same C engine an event call uses (passed in as `host`), so
-- what they report is what a real call would do.
local M = {}

local function out(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
end

-- A metatable that marks a table as a JSON array, so an empty one encodes as [].
M.array = {}

-- JSON with sorted keys and two-space indent, so `test` output diffs well.
local function encode(v, indent)
  local json = require("cjson")
  indent = indent or ""
  local t = type(v)
  if t == "table" then
    local n = #v
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if n > 0 and #keys == n then
      local parts = {}
      for i = 1, n do parts[i] = indent .. "  " .. encode(v[i], indent .. "  ") end
      return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
    end
    if #keys == 0 then return getmetatable(v) == M.array and "[]" or "{}" end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for i, k in ipairs(keys) do
      parts[i] = indent .. "  " .. encode(tostring(k)) .. ": " .. encode(v[k], indent .. "  ")
    end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
  elseif t == "string" then
    return (json.encode(v):gsub("\\/", "/"))
  elseif t == "number" or t == "boolean" then
    return json.encode(v)
  end
  return "null"
end
M.encode = encode

local function where(h)
  return string.format("%s:%d", h.file, h.line)
end

local function patterns(list)
  local q = {}
  for i, p in ipairs(list) do q[i] = string.format("%q", p) end
  return table.concat(q, ", ")
end

-- "a.conf (lua) + b.conf (lua)": what a config load read (host.load_config's files).
function M.describe(files)
  if #files == 0 then return files.own .. " (built-in defaults: no file)" end
  local parts = {}
  for i, f in ipairs(files) do parts[i] = f.path .. " (" .. f.format .. ")" end
  return table.concat(parts, " + ")
end

-- The names a call may be made by whose config differs from this one's: a
-- mode with its own file over the base (none when EVENTILATOR_CONF names
-- the one file every mode reads).
local MODES = { "eventilator", "reconfigurator", "registrator" }

-- check's config part: every mode's problems, each once. -> failed count
local function check_config(host, files, problems)
  local seen, bad = {}, 0
  local function report(list)
    for _, p in ipairs(list) do
      if not seen[p.msg] then
        seen[p.msg] = true
        bad = bad + 1
        out("FAILED  config %s", p.msg)
      end
    end
  end
  out("config  %s", M.describe(files))
  report(problems)
  for _, mode in ipairs(MODES) do
    if mode ~= host.name then
      local config, mproblems, mfiles = host.read_config(mode)
      local own = mfiles[#mfiles]
      if not config then
        bad = bad + 1
        out("FAILED  config for %s: %s", mode, mproblems)
      elseif own and own.path == mfiles.own and own.path ~= files.own then
        out("config  %s: %s", mode, M.describe(mfiles))
        report(mproblems)
      end
    end
  end
  return bad
end

-- The log target a call uses: $EVENTILATOR_LOG, else config.log.target. A
-- log section with an error (reported with the config's problems) raises on
-- read: then "syslog", where a call's lines go in that case too.
function M.log_target(config)
  local target = os.getenv("EVENTILATOR_LOG")
  if target and target ~= "" then return target end
  local ok, t = pcall(function() return config.log.target end)
  return ok and t or "syslog"
end

local function check(host)
  local config, path, _, problems, cfiles = host.load_config()
  if not config then
    out("config  %s: FAILED (see the error above)", path)
    return 1
  end
  local cbad = check_config(host, cfiles, problems)
  -- what the schema cannot see inside: cluster's ranges, redis.sentinel's keys (docs/cluster.md)
  local inner = { require("eventilator.cluster").settings, require("eventilator.store").sentinel }
  for _, settings in ipairs(inner) do
    local ok, err = settings()
    if not ok and err then
      cbad = cbad + 1
      out("FAILED  config %s", err)
    end
  end
  -- where a call's lines would go: a log file that will not open is an error
  -- (its lines go to the fallback); no syslog is a fact worth showing
  local to, why = host.log_where()
  local target = M.log_target(config)
  local log_bad = 0
  if not why then
    out("log     %s", to)
  elseif target == "syslog" then
    out("log     syslog: %s; lines go to %s", why, to)
  else
    log_bad = 1
    out("FAILED  %s", why)
  end
  local files = host.load_rules()
  local bad, never = 0, 0
  if #files == 0 then
    out("rules   %s: no *.lua files", os.getenv("EVENTILATOR_RULES") or config.rules_dir)
  end
  for _, f in ipairs(files) do
    if f.ok then
      out("ok      %s: %s", f.path, #f.patterns > 0 and patterns(f.patterns) or "(registers nothing)")
      for _, w in ipairs(f.warnings or {}) do never = never + 1; out("NEVER   %s", w) end
    else
      bad = bad + 1
      out("FAILED  %s", f.err)
    end
  end
  out("%d rule file(s), %d failed%s%s", #files, bad,
    never > 0 and (", " .. never .. " pattern(s) never match") or "",
    cbad > 0 and (", " .. cbad .. " config error(s)") or "")
  return (bad == 0 and never == 0 and cbad == 0 and log_bad == 0) and 0 or 1
end

-- test's options, before the event's arguments: flags, and options with a value.
local TEST_FLAGS = { ["--run"] = "run", ["--reconfig"] = "reconfig", ["--json"] = "json" }
local TEST_VALUES = { ["--replay"] = "file", ["--sentinel"] = "sentinel" }

local function test(host, args)
  if args[2] == "--spec" then
    return require("eventilator.testing").run_specs(table.move(args, 3, #args, 1, {}))
  end
  local o, rest = {}, {}
  local i = 2
  while i <= #args do
    local a = args[i]
    if #rest == 0 and TEST_FLAGS[a] then
      o[TEST_FLAGS[a]] = true
    elseif #rest == 0 and TEST_VALUES[a] then
      if args[i + 1] == nil then
        io.stderr:write("eventilator test: ", a, " needs a value\n")
        return 2
      end
      o[TEST_VALUES[a]] = args[i + 1]
      i = i + 1
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  if o.file then
    if #rest > 0 or o.reconfig then
      io.stderr:write("eventilator test --replay FILE takes no event arguments and no --reconfig\n")
      return 2
    end
    return require("eventilator.replay").main(host, o)
  end
  if o.json or o.sentinel then
    io.stderr:write("eventilator test: --json and --sentinel go with --replay FILE\n")
    return 2
  end
  local run, reconfig = o.run, o.reconfig
  -- the config the real call reads: reconfigurator's is eventilator.conf with reconfigurator.conf over it
  local config, _, _, problems = host.load_config(reconfig and "reconfigurator" or nil)
  if not config then return 1 end
  for _, p in ipairs(problems) do io.stderr:write("config ", p.msg, "\n") end
  local ev, err = host.parse(rest, reconfig)
  if not ev then
    io.stderr:write("eventilator test: ", err, "\n")
    return 2
  end
  local _ = ev.host -- resolve the lazy field so it shows
  out("%s", encode(ev))
  host.load_rules()
  local matched = host.match(ev.name)
  out("handlers for %s: %d", ev.name, #matched)
  for _, h in ipairs(matched) do
    out("  %s  on(%s)", where(h), patterns(h.patterns))
  end
  -- would Sentinel's retry of this call skip handlers? (any Sentinel pid): a record whose header
  -- has this mode and these args (escaped as src/core/delivery.c writes them), and no other arg
  local want = "\nmode " .. (reconfig and "reconfigurator" or "eventilator") .. "\n"
  for _, a in ipairs(rest) do
    want = want .. "arg " .. a:gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }) .. "\n"
  end
  local found = false
  for path, text in pairs(host.retries()) do
    local at = text:find(want, 1, true)
    if at and text:sub(at + #want, at + #want + 3) ~= "arg " then
      found = true
      out("retry record %s (Sentinel pid %s): a retry from that Sentinel skips:", path,
        text:match("\nppid (%d+)") or "?")
      for id in text:gmatch("\nok ([^\n]+)") do out("  %s", id) end
    end
  end
  if not found then out("no retry record: a call with these arguments runs every handler") end
  if not run then
    out("nothing ran: --run runs these handlers for real (they write to the store, post to the receivers)")
    return 0
  end
  -- the results between the log lines, in order, also when both go through one pipe
  io.stdout:setvbuf("line")
  out("running them for real (the store, the receivers); every log line also on stderr:")
  host.show_log(true)
  local _, failed = host.run(matched, ev)
  host.show_log(false)
  for _, h in ipairs(matched) do
    if h.ok then
      out("  ok      %s  %.1f ms", where(h), h.ms or 0)
    else
      out("  FAILED  %s  %s", where(h), h.err)
    end
  end
  return failed > 0 and 1 or 0
end

function M.main(args, host)
  local cmd = args[1]
  if cmd == "check" then
    return check(host)
  elseif cmd == "test" then
    return test(host, args)
  elseif cmd == "config" then return require("eventilator.showconfig").main(args, host)
  elseif cmd == "sentinels" then return require("eventilator.sentinels").main(args, host)
  elseif cmd == "history" then return require("eventilator.history").main(args, host)
  elseif cmd == "silence" then return require("eventilator.silence_cli").main(args, host)
  elseif cmd == "watch" then
    return require("eventilator.watch").main(args, host)
  elseif cmd == "work" then return require("eventilator.cluster_cli").work(args, host)
  elseif cmd == "cluster" then return require("eventilator.cluster_cli").main(args, host)
  end
  io.stderr:write(string.format("eventilator: unknown subcommand '%s' (try --help)\n", tostring(cmd)))
  return 2
end

return M
