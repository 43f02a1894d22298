-- eventilator.alertmanager: Sentinel events as Prometheus Alertmanager
-- alerts (API v2, POST <url>/api/v2/alerts), so grouping, inhibition,
-- silences and on-call routing work on them. See docs/alertmanager.md.
--
--   +odown / -odown            RedisMasterDown       fired / resolved
--   +sdown / -sdown            RedisInstanceDown     per instance (master, replica, sentinel)
--   -failover-abort-no-good-slave  RedisFailoverAborted  fired
--   +switch-master, client-reconfig (leader)
--                              RedisFailover         fired for failover_ttl seconds; the old
--                                                    master's RedisMasterDown and
--                                                    RedisFailoverAborted resolved
--
-- Every alert is posted to every URL in `urls` (an HA pair gets each
-- alert); the call succeeds when at least one accepts it.
local M = {}

-- The settings this module reads (config.alertmanager): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
alertmanager = {
  { "enabled", "boolean", false },
  { "urls", "list", { "http://127.0.0.1:9093" } },
  { "labels", "table" },
  { "generator_url", "string" },
  { "ttl", "number", 86400 },
  { "failover_ttl", "number", 600 },
  { "timeout", "number", 5 },
}
]==]

local words = require("eventilator.words")

-- What an event is about: alertname and the instance the labels name.
local function subject(ev)
  local family = tostring(ev.name):gsub("^[+-]", "")
  if family == "odown" then
    return "RedisMasterDown", ev.master or ev.instance, "master"
  elseif family == "sdown" then
    local i = ev.instance or {}
    return "RedisInstanceDown", i, words.ROLE[i.type] or i.type
  elseif family == "failover-abort-no-good-slave" then
    return "RedisFailoverAborted", ev.master or ev.instance, "master"
  elseif family == "switch-master" or family == "client-reconfig" then
    return "RedisFailover", ev.new_master, "master"
  end
  return "RedisSentinelEvent", ev.instance or ev.master, ev.instance and words.ROLE[ev.instance.type]
end

-- alertmanager.alert(ev, state [, opts]) -> one alert of the v2 API;
-- state is "firing" or "resolved". `alertname` in opts picks another name
-- (the failover resolves RedisFailoverAborted with it).
function M.alert(ev, state, opts)
  local s = require("eventilator.settings").get("alertmanager", opts)
  local name, inst, role = subject(ev)
  name = s.alertname or name
  local labels = {}
  for k, v in pairs(s.labels or {}) do labels[k] = tostring(v) end
  labels.alertname = name
  labels.pod = ev.pod and tostring(ev.pod) or nil
  labels.instance = words.addr(inst) or (type(inst) == "table" and inst.name) or nil
  labels.role = role
  local now = ev.time or os.time()
  local summary = words.summary(ev)
  local a = {
    labels = labels,
    annotations = {
      summary = summary,
      description = string.format("%s. The Sentinel on %s reported %s %s.", summary, tostring(ev.host),
        tostring(ev.name), ev.text or table.concat(ev.args or {}, " ")),
    },
    startsAt = words.rfc3339(now),
    generatorURL = s.generator_url,
  }
  if state == "resolved" then
    a.endsAt = words.rfc3339(now)
  elseif name == "RedisFailover" then
    a.endsAt = words.rfc3339(now + s.failover_ttl)
  else
    a.endsAt = words.rfc3339(now + s.ttl)
  end
  return a
end

-- alertmanager.post(alerts [, opts]) -> true | nil, err
-- POSTs the list to every URL; true when one of them accepted it.
function M.post(alerts, opts)
  local s = require("eventilator.settings").get("alertmanager", opts)
  local http = require("eventilator.http")
  local urls = s.urls
  if type(urls) == "string" then urls = { urls } end
  if type(urls) ~= "table" or #urls == 0 then return nil, "alertmanager: set alertmanager.urls" end
  local ok, errs = false, {}
  local post = { timeout = s.timeout, connect_timeout = math.min(s.timeout, 2) }
  for _, url in ipairs(urls) do
    local res, err = http.post_json(url:gsub("/+$", "") .. "/api/v2/alerts", alerts, post)
    if res and res.status >= 200 and res.status < 300 then
      ok = true
    else
      errs[#errs + 1] = res
        and string.format("%s: HTTP %d: %s", url, res.status, tostring(res.body):sub(1, 200))
        or tostring(err)
    end
  end
  local why = "alertmanager: " .. table.concat(errs, "; ")
  if ok then
    if #errs > 0 then require("eventilator.log").warn("%s (another Alertmanager accepted the alert)", why) end
    return true
  end
  return nil, why
end

local function silenced(ev)
  return require("eventilator.silence").skip("alertmanager", ev)
end

-- alertmanager.fire(ev [, opts]) / resolve(ev [, opts]) -> true | nil, err
-- An event a silence matches is not sent (true: docs/silences.md); post()
-- takes alerts, not an event, and always sends.
function M.fire(ev, opts)
  if silenced(ev) then return true end
  return M.post({ M.alert(ev, "firing", opts) }, opts)
end

function M.resolve(ev, opts)
  if silenced(ev) then return true end
  return M.post({ M.alert(ev, "resolved", opts) }, opts)
end

-- alertmanager.notify(ev [, opts]) -> true | nil, err: the mapping above;
-- other events (and an observer's client-reconfig) do nothing.
function M.notify(ev, opts)
  if type(ev) ~= "table" then error("alertmanager.notify: ev must be a table", 2) end
  local name = ev.name
  if name == "+odown" or name == "+sdown" or name == "-failover-abort-no-good-slave" then
    return M.fire(ev, opts)
  elseif name == "-odown" or name == "-sdown" then
    return M.resolve(ev, opts)
  elseif name == "+switch-master" or (name == "client-reconfig" and ev.role == "leader") then
    if silenced(ev) then return true end
    -- The old master's alerts end here: Sentinel raises no -odown for an
    -- address it no longer calls master (it comes back as a replica).
    local alerts = { M.alert(ev, "firing", opts) }
    for _, closed in ipairs({ "RedisMasterDown", "RedisFailoverAborted" }) do
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      o.alertname = closed
      local a = M.alert(ev, "resolved", o)
      a.labels.instance = words.addr(ev.old_master)
      alerts[#alerts + 1] = a
    end
    return M.post(alerts, opts)
  end
  return true
end

return M
