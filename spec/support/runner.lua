-- Runs the built eventilator binary the way Sentinel does (a name, argv,
-- an environment), each spec with its own config, rules folder and log file.
local procs = require("procs")

local Ctx = {}
Ctx.__index = Ctx

local M = {}

function M.new()
  local dir = procs.tmpdir()
  -- No syslog (a socket path nobody binds) and a fallback log of its own: a
  -- call that logs to syslog writes here, never to the machine's syslog or
  -- /var/log/redis (src/core/log.c).
  local self = setmetatable({ dir = dir, rules = dir .. "/rules", log = dir .. "/eventilator.log",
                              conf = dir .. "/eventilator.conf", fallback = dir .. "/fallback.log",
                              syslog = dir .. "/syslog.sock" }, Ctx)
  self.env = { EVENTILATOR_LOG_FALLBACK = self.fallback, EVENTILATOR_SYSLOG_SOCKET = self.syslog }
  os.execute("mkdir -p " .. procs.quote(self.rules))
  self:config("")
  return self
end

-- Write the config; a log target and the rules folder are added unless given.
function Ctx:config(text, raw)
  if raw then
    procs.write(self.conf, text)
  else
    -- state_dir is set first, so a spec's own setting (a later assignment) wins
    procs.write(self.conf, string.format("log = { target = %q, level = \"debug\" }\nrules_dir = %q\n" ..
      "state_dir = %q\n%s\n", self.log, self.rules, self.dir .. "/state", text))
  end
end

function Ctx:rule(name, text)
  procs.write(self.rules .. "/" .. name, text)
end

function Ctx:cleanup()
  procs.rmtree(self.dir)
end

function Ctx:logtext()
  return procs.read(self.log) or ""
end

-- Run `name` (eventilator, reconfigurator, registrator, or any other name:
-- a symlink is made for it) with args. Returns exit code, new log text, stdout.
function Ctx:run(name, ...)
  local bin = procs.build .. "/bin/" .. name
  if name ~= "eventilator" and name ~= "reconfigurator" and name ~= "registrator" then
    bin = self.dir .. "/" .. name
    os.execute(string.format("ln -sf %s %s", procs.quote(procs.build .. "/bin/eventilator"), procs.quote(bin)))
  end
  local args = {}
  for i = 1, select("#", ...) do args[i] = procs.quote((select(i, ...))) end
  local env = { "EVENTILATOR_CONF=" .. procs.quote(self.conf) }
  for k, v in pairs(self.env) do env[#env + 1] = k .. "=" .. procs.quote(v) end
  local before = #self:logtext()
  local out, rc = procs.sh(string.format("env %s %s %s 2>%s", table.concat(env, " "), procs.quote(bin),
    table.concat(args, " "), procs.quote(self.dir .. "/stderr")))
  return rc, self:logtext():sub(before + 1), out
end

-- Several calls from ONE parent process, as Sentinel makes a call and its
-- retries. `steps` are "call" (eventilator with `args`, default an +sdown)
-- or shell lines run between the calls. Returns the exit codes of the calls.
function Ctx:calls(steps, args)
  local bin = procs.quote(procs.build .. "/bin/eventilator")
  local argv = {}
  for i, a in ipairs(args or { "+sdown", "master pod1 127.0.0.1 6379" }) do argv[i] = procs.quote(a) end
  local script = { "export EVENTILATOR_CONF=" .. procs.quote(self.conf) }
  for k, v in pairs(self.env) do script[#script + 1] = "export " .. k .. "=" .. procs.quote(v) end
  for _, s in ipairs(steps) do
    if s == "call" then
      script[#script + 1] = bin .. " " .. table.concat(argv, " ") .. " 2>/dev/null; printf '%s ' $?"
    else
      script[#script + 1] = s
    end
  end
  local out = procs.sh("sh -c " .. procs.quote(table.concat(script, "\n")))
  local rcs = {}
  for rc in out:gmatch("%d+") do rcs[#rcs + 1] = tonumber(rc) end
  return rcs
end

-- How many times `pattern` occurs in text; plain: `pattern` is plain text (a log line's "+sdown").
function M.count(text, pattern, plain)
  if not plain then
    local _, n = text:gsub(pattern, "")
    return n
  end
  local n, i = 0, 1
  while true do
    local _, e = text:find(pattern, i, true)
    if not e then return n end
    n, i = n + 1, e + 1
  end
end

function Ctx:stderr()
  return procs.read(self.dir .. "/stderr") or ""
end

return M
