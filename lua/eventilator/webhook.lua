-- eventilator.webhook: the event as JSON to your own endpoint, optionally
-- signed. See docs/webhook.md.
--
-- The body is ev (with host and time) as a JSON object. With `secret` set,
-- two headers let the receiver check that it came from us, as GitHub's
-- webhooks do:
--   X-Eventilator-Signature: sha256=<hex HMAC-SHA256 of the body, keyed by secret>
--   X-Eventilator-Timestamp: <unix seconds when it was sent>
local M = {}

-- The settings this module reads (config.webhook): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
webhook = {
  { "enabled", "boolean", false },
  { "url", "string" },
  { "headers", "table" },
  { "secret", "string" },
  { "trigger_on", "list", { "+sdown", "-sdown", "+odown", "-odown", "+switch-master",
                            "-failover-abort-no-good-slave" } },
  { "timeout", "number", 5 },
}
]==]

-- webhook.body(ev) -> the JSON text that is sent
function M.body(ev)
  return require("cjson").encode(require("eventilator.words").record(ev))
end

-- webhook.sign(secret, body) -> "sha256=<hex>"
function M.sign(secret, body)
  return "sha256=" .. assert(require("eventilator.crypto").hmac_sha256(secret, body))
end

-- webhook.post(ev [, opts]) -> true | nil, err: any 2xx reply is success;
-- anything else, or no reply, fails (Sentinel retries). An event a silence
-- matches is not sent (true: docs/silences.md).
function M.post(ev, opts)
  if type(ev) ~= "table" then error("webhook.post: ev must be a table", 2) end
  local s = require("eventilator.settings").get("webhook", opts)
  if not s.url or s.url == "" then return nil, "webhook: set webhook.url" end
  if require("eventilator.silence").skip("webhook", ev) then return true end
  local http = require("eventilator.http") -- before crypto: both live in the full runtime
  local record = require("eventilator.words").record(ev)
  local headers = {}
  for k, v in pairs(s.headers or {}) do headers[k] = tostring(v) end
  if s.secret and s.secret ~= "" then
    -- post_json encodes the same table with the same cjson, unchanged in
    -- between: the bytes it sends are the bytes signed here
    headers["X-Eventilator-Signature"] = M.sign(s.secret, require("cjson").encode(record))
    headers["X-Eventilator-Timestamp"] = tostring(os.time())
  end
  local res, err = http.post_json(s.url, record,
    { headers = headers, timeout = s.timeout, connect_timeout = math.min(s.timeout, 2) })
  if not res then return nil, "webhook: " .. tostring(err) end
  if res.status >= 200 and res.status < 300 then return true end
  return nil, string.format("webhook: HTTP %d: %s", res.status, tostring(res.body):sub(1, 200))
end

return M
