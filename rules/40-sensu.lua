-- Send the events listed in sensu.trigger_on to the local Sensu client as
-- check results (docs/sensu.md). A name without its sign matches both signs.
if not config.sensu.enabled then return end

local events = require("eventilator.settings").triggers(config.sensu.trigger_on)
if #events == 0 then return end

on(events, function(ev)
  return require("eventilator.sensu").notify(ev)
end)
