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

local function check(host)
  local config, path, format = host.load_config()
  if not config then
    out("config  %s: FAILED (see the error above)", path)
    return 1
  end
  out("config  %s (%s)", path, format)
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
  out("%d rule file(s), %d failed%s", #files, bad,
    never > 0 and (", " .. never .. " pattern(s) never match") or "")
  return (bad == 0 and never == 0) and 0 or 1
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
  if not host.load_config() then return 2 end
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
  -- would Sentinel's retry of this call skip handlers? (any Sentinel pid)
  local found = false
  for path, text in pairs(host.retries(rest, reconfig)) do
    found = true
    local ppid = text:match("\nppid (%d+)") or "?"
    out("retry record %s (Sentinel pid %s): a retry from that Sentinel skips:", path, ppid)
    for id in text:gmatch("\nok ([^\n]+)") do out("  %s", id) end
  end
  if not found then out("no retry record: a call with these arguments runs every handler") end
  if not run then return 0 end
  local _, failed = host.run(matched, ev)
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
  end
  io.stderr:write(string.format("eventilator: unknown subcommand '%s' (try --help)\n", tostring(cmd)))
  return 2
end

return M
