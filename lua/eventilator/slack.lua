-- eventilator.slack: a Sentinel event as a Slack message, through an
-- incoming webhook (`slack.webhook_url`) or the Web API's chat.postMessage
-- (`slack.token`). See docs/slack.md.
--
-- Expected failures (network, timeout, a non-2xx reply, Slack's `ok: false`,
-- rate limiting) return nil, reason so the handler fails and Sentinel runs
-- the script again; a missing URL/token is a config mistake and fails the
-- same way, with a message saying which key to set.
local M = {}

-- Slack's message formatting treats these three as control characters.
function M.escape(s)
  return (tostring(s):gsub("[&<>]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;" }))
end
local esc = M.escape

local function addr(t)
  if type(t) ~= "table" or not t.ip then return nil end
  local ip = tostring(t.ip)
  if ip:find(":", 1, true) then ip = "[" .. ip .. "]" end
  return t.port and (ip .. ":" .. tostring(t.port)) or ip
end

local ROLE = { master = "master", slave = "replica", sentinel = "sentinel" }

-- "master cache1 (10.0.0.5:6379)", "replica 10.0.0.7:6379 of pod cache1",
-- "sentinel 3e0933e0 (10.0.0.7:26379) of pod cache1"
local function who(ev)
  local i = ev.instance
  if type(i) ~= "table" then return "pod " .. tostring(ev.pod or "?") end
  local role = ROLE[i.type] or tostring(i.type or "instance")
  if i.type == "master" then
    return string.format("master %s (%s)", tostring(i.name), addr(i) or "?")
  end
  local of = ev.pod and (" of pod " .. tostring(ev.pod)) or ""
  if i.type == "sentinel" then
    return string.format("sentinel %s (%s)%s", tostring(i.name):sub(1, 8), addr(i) or "?", of)
  end
  return role .. " " .. (addr(i) or tostring(i.name)) .. of
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

-- slack.summary(ev) -> one line of plain (unescaped) text.
function M.summary(ev)
  local tpl = SUMMARY[ev.name]
  if not tpl then
    local detail = ev.text or (type(ev.args) == "table" and table.concat(ev.args, " ")) or ""
    return tostring(ev.name) .. (detail ~= "" and (" " .. detail) or "")
  end
  local vars = {
    who = who(ev), pod = tostring(ev.pod or "?"),
    old = addr(ev.old_master) or "?", new = addr(ev.new_master) or "?",
    quorum = ev.votes and ev.quorum and string.format(" (%s of quorum %s agree)", ev.votes, ev.quorum) or "",
    role = tostring(ev.role), state = tostring(ev.state),
    option = tostring(ev.option), value = tostring(ev.value),
  }
  return (tpl:gsub("{(%w+)}", vars))
end

-- slack.color(ev) -> "danger" | "good" | "warning"
function M.color(ev)
  local name = tostring(ev.name)
  if name == "+odown" or name:find("^%-failover%-abort%-")
    or (type(ev.instance) == "table" and ev.instance.type == "sentinel") then
    return "danger"
  elseif name == "-odown" or name == "-sdown" then
    return "good"
  end
  return "warning"
end

-- slack.message(ev, opts) -> the payload table (without channel), escaped.
function M.message(ev, opts)
  opts = opts or {}
  local summary = M.summary(ev)
  local fields = {
    { title = "Event", value = esc(ev.name), short = true },
    { title = "Pod", value = esc(ev.pod or "-"), short = true },
  }
  local i = ev.instance
  if type(i) == "table" then
    fields[#fields + 1] = { title = "Instance", value = esc(ROLE[i.type] or i.type or "-"), short = true }
    fields[#fields + 1] = { title = "Address", value = esc(addr(i) or i.name or "-"), short = true }
  elseif ev.old_master or ev.new_master then
    if ev.role then fields[#fields + 1] = { title = "Role", value = esc(ev.role), short = true } end
    fields[#fields + 1] = { title = "Address", short = true,
      value = esc((addr(ev.old_master) or "?") .. " -> " .. (addr(ev.new_master) or "?")) }
  end
  fields[#fields + 1] = { title = "Reported by", value = esc(ev.host or "-"), short = true }
  local text = esc(string.format("%s %s", tostring(ev.name), summary))
  local att = {
    fallback = text,
    color = M.color(ev),
    author_name = opts.author_name and opts.author_name ~= "" and esc(opts.author_name) or nil,
    fields = fields,
    footer = esc(ev.host or ""),
    ts = ev.time and math.floor(ev.time) or nil,
  }
  return {
    text = text,
    username = opts.username,
    attachments = { att },
  }
end

-- A reply header, whatever case the server (or the binding) used.
local function header(h, name)
  if type(h) ~= "table" then return nil end
  name = name:lower()
  for k, v in pairs(h) do
    if type(k) == "string" and k:lower() == name then return v end
    if type(k) == "number" and type(v) == "string" then
      local hk, hv = v:match("^([^:]+):%s*(.-)%s*$")
      if hk and hk:lower() == name then return hv end
    end
  end
  return nil
end

-- A webhook URL is a secret: keep only scheme, host and first path
-- segment in messages that reach the log.
local function redact(msg, url)
  local keep = url:match("^(%a[%w+.-]*://[^/]+/[^/]*)") or "<webhook>"
  local plain = url:gsub("%p", "%%%0")
  local repl = (keep .. "/..."):gsub("%%", "%%%%")
  return (tostring(msg):gsub(plain, repl))
end

-- What went wrong with a reply, or nil when it is a success.
local function failure(res, what)
  local body = tostring(res.body or ""):sub(1, 200)
  if res.status == 429 then
    local ra = header(res.headers, "retry-after")
    return string.format("slack: %s: rate limited (429), Retry-After %s", what, tostring(ra or "?"))
  end
  if res.status < 200 or res.status > 299 then
    return string.format("slack: %s: HTTP %d: %s", what, res.status, body)
  end
  return nil
end

-- slack.notify(ev [, opts]) -> true | nil, reason
-- opts overrides config.slack for this call (webhook_url, token, channel,
-- username, author_name, api_url, timeout). With webhook_url set the
-- incoming webhook is used, else chat.postMessage with token.
function M.notify(ev, opts)
  if type(ev) ~= "table" then error("slack.notify: ev must be a table", 2) end
  local s = require("eventilator.settings").get("slack", opts)
  local http = require("eventilator.http")
  local json = require("cjson")
  local msg = M.message(ev, s)
  local timeout = s.timeout
  if s.webhook_url and s.webhook_url ~= "" then
    local res, err = http.request {
      method = "POST", url = s.webhook_url, body = json.encode(msg), timeout = timeout,
      connect_timeout = math.min(timeout, 5),
      headers = { ["Content-Type"] = "application/json; charset=utf-8" },
    }
    if not res then return nil, "slack: webhook: " .. redact(err, s.webhook_url) end
    local bad = failure(res, "webhook")
    if bad then return nil, bad end
    return true
  end
  if not s.token or s.token == "" then
    return nil, "slack: set slack.webhook_url or slack.token"
  end
  msg.channel = s.channel
  local url = tostring(s.api_url):gsub("/+$", "") .. "/chat.postMessage"
  local res, err = http.request {
    method = "POST", url = url, body = json.encode(msg), timeout = timeout,
    connect_timeout = math.min(timeout, 5),
    headers = {
      ["Content-Type"] = "application/json; charset=utf-8",
      ["Authorization"] = "Bearer " .. s.token,
    },
  }
  if not res then return nil, "slack: chat.postMessage: " .. tostring(err) end
  local bad = failure(res, "chat.postMessage")
  if bad then return nil, bad end
  local ok, reply = pcall(json.decode, res.body or "")
  if not ok or type(reply) ~= "table" then
    return nil, "slack: chat.postMessage: reply is not JSON: " .. tostring(res.body):sub(1, 200)
  end
  if reply.ok ~= true then
    return nil, "slack: chat.postMessage: " .. tostring(reply.error or "ok is not true")
  end
  return true
end

return M
