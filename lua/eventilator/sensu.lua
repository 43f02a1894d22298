-- eventilator.sensu: Sentinel events as Sensu check results, written to the
-- Sensu client (agent) socket over TCP (`sensu.host`:`sensu.port`). See
-- docs/sensu.md.
--
-- The result names and the zd_* fields are those of the Go eventilator, so
-- Sensu handlers and ZenDesk rules built on them keep working. Each pod is
-- its own Sensu "JIT" client (`source = "pod-<name>"`), so an alert and the
-- result that resolves it share name and source.
local M = {}

-- The settings this module reads (config.sensu): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
sensu = {
  { "enabled", "boolean", false },
  { "host", "string", "127.0.0.1" },
  { "port", "integer", 3030 },
  { "trigger_on", "list", { "+odown", "-odown", "-failover-abort-no-good-slave" } },
  { "handler_no_good_slave", "string" },
  { "handler_promoted_slave", "string" },
  { "timeout", "number", 5 },
}
]==]

local function addr(t)
  return require("eventilator.words").addr(t) or "?"
end

local MASTER_DOWN = {
  name = "redis-master-down",
  subject = "Monitoring alert for %s Master Down",
  description = "Pod %s has a non-responsive Master",
  tags = "monitoring redis_master_odown",
}
local FAILOVER = {
  name = "sentinel-failover-status",
  subject = "Monitoring alert for %s Failover Failure",
  description = "Pod %s Is in Aborted Failover State",
  tags = "monitoring redis_pod_down",
}

-- Event name -> { kind, status, handler config key, output(ev) }.
local CHECKS = {
  ["+odown"] = { MASTER_DOWN, 1, nil, function(ev)
    local q = ev.votes and ev.quorum and string.format(", %s/%s sentinels agree", ev.votes, ev.quorum) or ""
    return string.format("Pod %s has a non-responsive Master (%s%s)", ev.pod, addr(ev.instance), q)
  end },
  ["-odown"] = { MASTER_DOWN, 0, nil, function(ev)
    return string.format("Pod %s Master is responsive again (%s)", ev.pod, addr(ev.instance))
  end },
  ["-failover-abort-no-good-slave"] = { FAILOVER, 2, "handler_no_good_slave", function(ev)
    return string.format("Pod %s has a non-responsive Master and no promotable slave", ev.pod)
  end },
  ["+promoted-slave"] = { FAILOVER, 0, "handler_promoted_slave", function(ev)
    return string.format("Pod %s failed over: replica %s promoted to master", ev.pod, addr(ev.instance))
  end },
  ["+switch-master"] = { FAILOVER, 0, "handler_promoted_slave", function(ev)
    return string.format("Pod %s failed over from %s to %s", ev.pod, addr(ev.old_master), addr(ev.new_master))
  end },
}

-- sensu.result(ev [, opts]) -> the check result table, or nil when the
-- event has no Sensu meaning.
function M.result(ev, opts)
  local c = CHECKS[ev.name]
  if not c or type(ev.pod) ~= "string" then return nil end
  local kind, status, hkey, output = c[1], c[2], c[3], c[4]
  local s = require("eventilator.settings").get("sensu", opts)
  local r = {
    name = kind.name,
    source = "pod-" .. ev.pod,
    status = status,
    output = output(ev),
    occurrences = 1,
    host = ev.host,
    zd_subject = kind.subject:format(ev.pod),
    zd_description = kind.description:format(ev.pod),
    zd_set_tags = kind.tags,
  }
  local h = hkey and s[hkey]
  if type(h) == "string" and h ~= "" then
    r.handlers = { h }
  elseif type(h) == "table" and #h > 0 then
    r.handlers = h
  end
  return r
end

-- sensu.notify(ev [, opts]) -> true | nil, reason
-- opts overrides config.sensu for this call (host, port, timeout,
-- handler_no_good_slave, handler_promoted_slave). Events with no check
-- result (see docs/sensu.md), and events a silence matches
-- (docs/silences.md), are skipped and return true.
function M.notify(ev, opts)
  if type(ev) ~= "table" then error("sensu.notify: ev must be a table", 2) end
  local result = M.result(ev, opts)
  if not result then
    require("eventilator.log").debug("sensu: no check result for %s, skipped", tostring(ev.name))
    return true
  end
  if require("eventilator.silence").skip("sensu", ev) then return true end
  local s = require("eventilator.settings").get("sensu", opts)
  local timeout = s.timeout
  local tcp = require("eventilator.tcp")
  local conn, err = tcp.connect(s.host, tonumber(s.port),
    { connect_timeout = math.min(timeout, 5), timeout = timeout })
  if not conn then return nil, "sensu: " .. tostring(err) end
  local ok, serr = conn:send(require("cjson").encode(result))
  if not ok then
    conn:close()
    return nil, "sensu: send: " .. tostring(serr)
  end
  -- The client answers "ok" or "invalid" once it has parsed the JSON. Read
  -- two bytes first, so a client that keeps the connection open is fine.
  local reply, rerr, partial = conn:receive(2)
  if reply == "in" then
    local rest
    rest, rerr, partial = conn:receive(5)
    reply = "in" .. (rest or partial or "")
  end
  conn:close()
  if reply == "ok" then return true end
  if reply == "invalid" then
    return nil, string.format("sensu: %s:%s rejected the check result as invalid", s.host, s.port)
  end
  if reply then return nil, string.format("sensu: unexpected reply %q", reply) end
  return nil, string.format("sensu: no reply: %s%s", tostring(rerr),
    partial and partial ~= "" and string.format(" (got %q)", partial) or "")
end

return M
