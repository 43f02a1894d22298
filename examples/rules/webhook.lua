-- /etc/redis/eventilator.d/60-webhook.lua
-- Tell our deploy tooling about every failover (signed), and our chat bot
-- about masters going down, each once.
--
-- eventilator.conf:
--   webhook = { url = "https://deploy.example.net/hooks/redis", secret = "a long random string",
--               headers = { ["X-Team"] = "storage" } }
--   chatbot = { url = "https://bot.example.net/redis" }
local webhook = require("eventilator.webhook")

-- Only the leader's client-reconfig call has role "leader": one post per failover.
on("client-reconfig", function(ev)
  if ev.role ~= "leader" then return true end
  return webhook.post(ev)
end)

on({ "+odown", "-odown" }, function(ev)
  if not config.chatbot then return true end
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end
  if not first then return true end
  -- the bot has no secret; the signature headers are left out
  return webhook.post(ev, { url = config.chatbot.url, secret = false, headers = {} })
end)
