-- eventilator.words: a Sentinel event in plain words, for every receiver
-- that shows it to a person (Slack, Alertmanager, PagerDuty).
local M = {}

function M.addr(t)
  if type(t) ~= "table" or not t.ip then return nil end
  local ip = tostring(t.ip)
  if ip:find(":", 1, true) then ip = "[" .. ip .. "]" end
  return t.port and (ip .. ":" .. tostring(t.port)) or ip
end

M.ROLE = { master = "master", slave = "replica", sentinel = "sentinel" }

-- "master cache1 (10.0.0.5:6379)", "replica 10.0.0.7:6379 of pod cache1",
-- "sentinel 3e0933e0 (10.0.0.7:26379) of pod cache1"
function M.who(ev)
  local i = ev.instance
  if type(i) ~= "table" then return "pod " .. tostring(ev.pod or "?") end
  local role = M.ROLE[i.type] or tostring(i.type or "instance")
  if i.type == "master" then
    return string.format("master %s (%s)", tostring(i.name), M.addr(i) or "?")
  end
  local of = ev.pod and (" of pod " .. tostring(ev.pod)) or ""
  if i.type == "sentinel" then
    return string.format("sentinel %s (%s)%s", tostring(i.name):sub(1, 8), M.addr(i) or "?", of)
  end
  return role .. " " .. (M.addr(i) or tostring(i.name)) .. of
end

-- One line per event; {who}, {pod}, {old}, {new}, {quorum}, {role},
-- {state}, {option}, {value} are filled in from ev.
local SUMMARY = {
  ["+sdown"] = "{who} is subjectively down",
  ["-sdown"] = "{who} is no longer subjectively down",
  ["+odown"] = "{who} is objectively down{quorum}",
  ["-odown"] = "{who} is no longer objectively down",
  ["+try-failover"] = "failover of pod {pod} started",
  ["+elected-leader"] = "this sentinel leads the failover of pod {pod}",
  ["+selected-slave"] = "{who} was selected for promotion",
  ["+promoted-slave"] = "{who} was promoted to master",
  ["+failover-end"] = "failover of pod {pod} ended",
  ["+failover-end-for-timeout"] = "failover of pod {pod} ended on timeout; some replicas may be unconfigured",
  ["-failover-abort-not-elected"] = "failover of pod {pod} aborted: this sentinel was not elected",
  ["-failover-abort-no-good-slave"] = "failover of pod {pod} aborted: no replica can be promoted",
  ["-failover-abort-slave-timeout"] = "failover of pod {pod} aborted: the chosen replica did not take over",
  ["+switch-master"] = "pod {pod} switched master from {old} to {new}",
  ["client-reconfig"] = "pod {pod} fails over from {old} to {new} ({role}, {state})",
  ["+monitor"] = "now monitoring {who}",
  ["-monitor"] = "no longer monitoring {who}",
  ["+reset-master"] = "{who} was reset",
  ["+set"] = "pod {pod}: {option} set to {value}",
  ["+config-update-from"] = "pod {pod} took a newer config from {who}",
}

-- words.summary(ev) -> one line of plain (unescaped) text.
function M.summary(ev)
  local tpl = SUMMARY[ev.name]
  if not tpl then
    local detail = ev.text or (type(ev.args) == "table" and table.concat(ev.args, " ")) or ""
    return tostring(ev.name) .. (detail ~= "" and (" " .. detail) or "")
  end
  local vars = {
    who = M.who(ev), pod = tostring(ev.pod or "?"),
    old = M.addr(ev.old_master) or "?", new = M.addr(ev.new_master) or "?",
    quorum = ev.votes and ev.quorum and string.format(" (%s of quorum %s agree)", ev.votes, ev.quorum) or "",
    role = tostring(ev.role), state = tostring(ev.state),
    option = tostring(ev.option), value = tostring(ev.value),
  }
  return (tpl:gsub("{(%w+)}", vars))
end

-- words.record(ev) -> a plain copy of ev for JSON, with ev.host (looked up
-- on first read, so not in the table until then) filled in.
function M.record(ev)
  local t = {}
  for k, v in pairs(ev) do t[k] = v end
  t.host, t.time = ev.host, ev.time
  return t
end

-- words.rfc3339(t) -> "2026-03-01T09:05:07.500Z" (UTC)
function M.rfc3339(t)
  local whole = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%03dZ", math.floor((t - whole) * 1000))
end

return M
