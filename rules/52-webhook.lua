-- POST the events listed in webhook.trigger_on to webhook.url as JSON,
-- signed when webhook.secret is set (docs/webhook.md). A name without its
-- + or - sign ("sdown") matches both signs.
if not config.webhook.enabled then return end

local events = require("eventilator.settings").triggers(config.webhook.trigger_on)
if #events == 0 then return end

on(events, function(ev)
  return require("eventilator.webhook").post(ev)
end)
