-- eventilator silence add | list | expire (contract section 15): the
-- command line over eventilator.silence, kept apart from it because --json
-- needs cjson, which the lean start-up binary has not, and silence.match
-- must stay usable there. See docs/silences.md.
--
-- Exit status: 0 done; 1 the store could not be reached, the config did not
-- load, or there is no such silence; 2 bad usage.
local M = {}

local USAGE = [[
usage: eventilator silence add --pod NAME [--event PATTERN] --for DURATION --comment TEXT [--author NAME]
       eventilator silence list [--json]
       eventilator silence expire ID
A silence keeps the receivers (Slack, Sensu, PagerDuty, Alertmanager, the webhook) from sending
the events of pod NAME that PATTERN matches (an on() pattern such as "+odown" or "+*down";
default "*", every event) until DURATION (90s, 30m, 2h, 1d) has passed. Reactions (HAProxy,
Docker, Consul, metrics, the stream) still run. Silences live in the store, config.redis.
]]

local function usage_error(msg)
  io.stderr:write("eventilator silence: ", msg, "\n", USAGE)
  return 2
end

local function fail(msg)
  io.stderr:write("eventilator silence: ", msg, "\n")
  return 1
end

local function utc(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- An environment variable that is set and not empty (sudo sets SUDO_USER; su may leave it empty).
local function env(name)
  local v = os.getenv(name)
  return v ~= "" and v or nil
end

-- Options of `add`: --name VALUE or --name=VALUE, each at most once.
local ADD_OPTS = { pod = true, event = true, ["for"] = true, comment = true, author = true }

local function parse_add(args)
  local o, i = {}, 3
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if not name or not ADD_OPTS[name] then return nil, "add: unknown option '" .. a .. "'" end
    if not value then
      i = i + 1
      value = args[i]
      if value == nil then return nil, "add: --" .. name .. " needs a value" end
    end
    if o[name] then return nil, "add: --" .. name .. " given twice" end
    o[name] = value
    i = i + 1
  end
  if not o.pod or o.pod == "" then
    return nil, "add: --pod NAME is required (the master's name in Sentinel)"
  end
  if o.pod:find("%s") then return nil, string.format("add: --pod %q: a master name has no spaces", o.pod) end
  if not o["for"] then return nil, "add: --for DURATION is required (30m, 2h, 1d)" end
  local secs, err = require("eventilator.duration").parse(o["for"])
  if not secs then return nil, "add: --for: " .. err end
  o.seconds = secs
  if not o.comment or not o.comment:find("%S") then
    return nil, "add: --comment TEXT is required: say why, for whoever finds the pager quiet"
  end
  if o.event then
    local known, near = require("eventilator.pattern").known(o.event)
    if not known then
      return nil, string.format("add: --event `%s` matches no Sentinel event%s", o.event,
        near and string.format("; did you mean `%s`?", near) or "")
    end
  end
  o.author = o.author or env("SUDO_USER") or env("USER") or env("LOGNAME") or "unknown"
  return o
end

local function add(args, host)
  local o, perr = parse_add(args)
  if not o then return usage_error(perr) end
  if not host.load_config() then return 1 end
  local s, err = require("eventilator.silence").add{ pod = o.pod, event = o.event, seconds = o.seconds,
    comment = o.comment, author = o.author }
  if not s then return fail("store (config.redis): " .. tostring(err)) end
  require("eventilator.log").info("silences: added %s: pod %s, events %s, until %s, by %s: %s", s.id, s.pod,
    s.event, utc(s.ends), s.author, s.comment)
  io.stdout:write(s.id, "\n")
  return 0
end

-- A table with a header and left-aligned columns; the last column is not padded.
local function print_table(rows)
  local width = {}
  for _, r in ipairs(rows) do
    for c, v in ipairs(r) do width[c] = math.max(width[c] or 0, utf8.len(v) or #v) end
  end
  for _, r in ipairs(rows) do
    local parts = {}
    for c, v in ipairs(r) do
      parts[c] = c < #r and (v .. string.rep(" ", width[c] - (utf8.len(v) or #v))) or v
    end
    io.stdout:write(table.concat(parts, "  "), "\n")
  end
end

local function list(args, host)
  local json = false
  for i = 3, #args do
    if args[i] ~= "--json" then return usage_error("list: unknown option '" .. args[i] .. "'") end
    json = true
  end
  if not host.load_config() then return 1 end
  local silences, now = require("eventilator.silence").active()
  if not silences then return fail("store (config.redis): " .. tostring(now)) end
  if json then
    local cli = require("eventilator.cli")
    io.stdout:write(cli.encode(setmetatable(silences, cli.array)), "\n")
    return 0
  end
  if #silences == 0 then
    io.stdout:write("no silences\n")
    return 0
  end
  local duration = require("eventilator.duration")
  local rows = { { "ID", "POD", "EVENT", "ENDS", "LEFT", "AUTHOR", "COMMENT" } }
  for _, s in ipairs(silences) do
    rows[#rows + 1] = { s.id, s.pod, s.event, utc(s.ends), duration.format(s.ends - now), s.author,
      (s.comment:gsub("%s+", " ")) }
  end
  print_table(rows)
  return 0
end

local function expire(args, host)
  if #args ~= 3 or args[3]:sub(1, 1) == "-" then return usage_error("expire: one silence ID expected") end
  if not host.load_config() then return 1 end
  local s, err = require("eventilator.silence").expire(args[3])
  if s == false then return fail("no such silence: " .. args[3] .. " (it ended, or was never added)") end
  if not s then return fail("store (config.redis): " .. tostring(err)) end
  require("eventilator.log").info("silences: expired %s: pod %s, events %s (was until %s, by %s: %s)", s.id,
    s.pod, s.event, utc(s.ends), s.author, s.comment)
  return 0
end

local COMMANDS = { add = add, list = list, expire = expire }

function M.main(args, host)
  local sub = args[2]
  if sub == "-h" or sub == "--help" or sub == "help" then
    io.stdout:write(USAGE)
    return 0
  end
  if not COMMANDS[sub] then
    return usage_error(sub and ("unknown command '" .. sub .. "'") or "add, list or expire?")
  end
  for i = 3, #args do
    if args[i] == "-h" or args[i] == "--help" then
      io.stdout:write(USAGE)
      return 0
    end
  end
  return COMMANDS[sub](args, host)
end

return M
