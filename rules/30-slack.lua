-- Post the events listed in slack.trigger_on to Slack (docs/slack.md).
-- A name without its + or - sign ("promoted-slave") matches both signs.
if not config.slack.enabled then return end

local events = {}
for _, name in ipairs(config.slack.trigger_on or {}) do
  if name:find("^[+-]") then
    events[#events + 1] = name
  else
    events[#events + 1] = "+" .. name
    events[#events + 1] = "-" .. name
  end
end
if #events == 0 then return end

on(events, function(ev)
  return require("eventilator.slack").notify(ev)
end)
