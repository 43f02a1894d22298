-- Post the events listed in slack.trigger_on to Slack (docs/slack.md).
-- A name without its + or - sign ("promoted-slave") matches both signs.
if not config.slack.enabled then return end

local events = require("eventilator.settings").triggers(config.slack.trigger_on)
if #events == 0 then return end

on(events, function(ev)
  return require("eventilator.slack").notify(ev)
end)
