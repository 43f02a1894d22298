-- eventilator.slack: a Sentinel event as a Slack message, through an
-- incoming webhook (`slack.webhook_url`) or the Web API's chat.postMessage
-- (`slack.token`). See docs/slack.md.
--
-- Expected failures (network, timeout, a non-2xx reply, Slack's `ok: false`,
-- rate limiting) return nil, reason so the handler fails and Sentinel runs
-- the script again; a missing URL/token is a config mistake and fails the
-- same way, with a message saying which key to set.
local M = {}

-- The settings this module reads (config.slack): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
slack = {
  { "enabled", "boolean", false },
  { "webhook_url", "string" },
  { "token", "string" },
  { "channel", "string", "sentinel-events" },
  { "username", "string", "eventilator" },
  { "author_name", "string", "eventilator" },
  { "trigger_on", "list", { "+sdown", "-sdown", "+odown", "-odown", "+promoted-slave" } },
  { "api_url", "string", "https://slack.com/api" },
  { "timeout", "number", 5 },
}
]==]

-- Slack's message formatting treats these three as control characters.
function M.escape(s)
  return (tostring(s):gsub("[&<>]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;" }))
end
local esc = M.escape

local words = require("eventilator.words")
local addr, ROLE = words.addr, words.ROLE

-- slack.summary(ev) -> one line of plain (unescaped) text.
M.summary = words.summary

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
-- incoming webhook is used, else chat.postMessage with token. An event a
-- silence matches is not sent (true: docs/silences.md).
function M.notify(ev, opts)
  if type(ev) ~= "table" then error("slack.notify: ev must be a table", 2) end
  if require("eventilator.silence").skip("slack", ev) then return true end
  local s = require("eventilator.settings").get("slack", opts)
  local http = require("eventilator.http")
  local msg = M.message(ev, s)
  local post = { timeout = s.timeout, connect_timeout = math.min(s.timeout, 5),
    headers = { ["Content-Type"] = "application/json; charset=utf-8" } }
  if s.webhook_url and s.webhook_url ~= "" then
    local res, err = http.post_json(s.webhook_url, msg, post)
    if not res then return nil, "slack: webhook: " .. redact(err, s.webhook_url) end
    local bad = failure(res, "webhook")
    if bad then return nil, bad end
    return true
  end
  if not s.token or s.token == "" then
    return nil, "slack: set slack.webhook_url or slack.token"
  end
  msg.channel = s.channel
  post.headers.Authorization = "Bearer " .. s.token
  local res, err = http.post_json(tostring(s.api_url):gsub("/+$", "") .. "/chat.postMessage", msg, post)
  if not res then return nil, "slack: chat.postMessage: " .. tostring(err) end
  local bad = failure(res, "chat.postMessage")
  if bad then return nil, bad end
  local ok, reply = pcall(require("cjson").decode, res.body or "")
  if not ok or type(reply) ~= "table" then
    return nil, "slack: chat.postMessage: reply is not JSON: " .. tostring(res.body):sub(1, 200)
  end
  if reply.ok ~= true then
    return nil, "slack: chat.postMessage: " .. tostring(reply.error or "ok is not true")
  end
  return true
end

return M
