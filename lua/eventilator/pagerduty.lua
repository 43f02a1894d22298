-- eventilator.pagerduty: Sentinel events to PagerDuty's Events API v2
-- (`trigger` / `resolve`). See docs/pagerduty.md.
--
-- dedup_key is redis/<pod>/<family> (odown, failover; sdown per instance:
-- redis/<pod>/sdown/<ip:port>), so the resolve closes what the trigger
-- opened, and the same event from three Sentinels is one incident.
--
-- Replies: 202 is success. 429 and 5xx return nil, err: Sentinel runs the
-- script again later. 400 means PagerDuty will never take this event (a
-- bad routing key, a malformed payload): retrying cannot help, so it is
-- logged at error level with PagerDuty's reason and the handler returns
-- true, instead of spending Sentinel's ten retries on it.
local M = {}

-- The settings this module reads (config.pagerduty): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
pagerduty = {
  { "enabled", "boolean", false },
  { "routing_key", "string" },
  { "url", "string", "https://events.pagerduty.com/v2/enqueue" },
  { "severity", { "critical", "error", "warning", "info" }, "critical" }, -- what Events API v2 takes
  { "timeout", "number", 5 },
}
]==]

local words = require("eventilator.words")

-- family(ev) -> the part of dedup_key after the pod
function M.family(ev)
  local f = tostring(ev.name):gsub("^[+-]", "")
  if f == "sdown" then
    return "sdown/" .. (words.addr(ev.instance) or tostring(ev.instance and ev.instance.name))
  elseif f:find("^failover%-abort") or f == "switch-master" or f == "client-reconfig" then
    return "failover"
  end
  return f
end

function M.dedup_key(ev)
  return "redis/" .. tostring(ev.pod or "-") .. "/" .. M.family(ev)
end

-- pagerduty.event(ev, action [, opts]) -> the Events API v2 body
function M.event(ev, action, opts)
  local s = require("eventilator.settings").get("pagerduty", opts)
  local body = {
    routing_key = s.routing_key,
    event_action = action,
    dedup_key = M.dedup_key(ev),
    client = "eventilator",
  }
  if action == "trigger" then
    local inst = ev.instance or ev.new_master or ev.master
    body.payload = {
      summary = words.summary(ev):sub(1, 1024),
      source = words.addr(inst) or tostring(ev.host),
      severity = s.severity,
      timestamp = ev.time and words.rfc3339(ev.time) or nil,
      component = ev.pod,
      group = ev.pod,
      class = tostring(ev.name),
      custom_details = words.record(ev),
    }
  end
  return body
end

-- send(body, s) -> true | nil, err
local function send(body, opts)
  local s = require("eventilator.settings").get("pagerduty", opts)
  if not s.routing_key or s.routing_key == "" then
    return nil, "pagerduty: set pagerduty.routing_key"
  end
  local res, err = require("eventilator.http").post_json(s.url, body,
    { timeout = s.timeout, connect_timeout = math.min(s.timeout, 2) })
  if not res then return nil, "pagerduty: " .. tostring(err) end
  if res.status >= 200 and res.status < 300 then return true end
  local reply = tostring(res.body):sub(1, 300)
  if res.status == 400 then
    require("eventilator.log").error("pagerduty: %s %s was rejected for good (HTTP 400: %s); not retried: "
      .. "fix pagerduty.routing_key or the event", body.event_action, body.dedup_key, reply)
    return true
  end
  return nil, string.format("pagerduty: %s %s: HTTP %d: %s", body.event_action, body.dedup_key,
    res.status, reply)
end

local function silenced(ev)
  return require("eventilator.silence").skip("pagerduty", ev)
end

-- pagerduty.trigger(ev [, opts]) / resolve(ev [, opts]) -> true | nil, err
-- An event a silence matches is not sent (true: docs/silences.md).
function M.trigger(ev, opts)
  if silenced(ev) then return true end
  return send(M.event(ev, "trigger", opts), opts)
end

function M.resolve(ev, opts)
  if silenced(ev) then return true end
  return send(M.event(ev, "resolve", opts), opts)
end

-- pagerduty.notify(ev [, opts]): +odown, +sdown and a failover abort
-- trigger; -odown and -sdown resolve; a completed failover (+switch-master,
-- the leader's client-reconfig) resolves the pod's odown and failover
-- incidents. Other events do nothing; a silenced one sends nothing.
function M.notify(ev, opts)
  if type(ev) ~= "table" then error("pagerduty.notify: ev must be a table", 2) end
  local name = tostring(ev.name)
  local action
  if name == "+odown" or name == "+sdown" or name:find("^%-failover%-abort%-") then
    action = "trigger"
  elseif name == "-odown" or name == "-sdown" then
    action = "resolve"
  elseif name == "+switch-master" or (name == "client-reconfig" and ev.role == "leader") then
    action = "switch"
  else
    return true
  end
  if silenced(ev) then return true end
  if action == "switch" then
    -- Sentinel raises no -odown for a master that moved: the switch ends
    -- both the master-down incident and a failover abort's.
    local body = M.event(ev, "resolve", opts)
    body.dedup_key = "redis/" .. tostring(ev.pod or "-") .. "/odown"
    local ok, err = send(body, opts)
    if not ok then return nil, err end
    action = "resolve"
  end
  return send(M.event(ev, action, opts), opts)
end

return M
