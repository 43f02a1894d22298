-- Send the events listed in sensu.trigger_on to the local Sensu client as
-- check results (docs/sensu.md). A name without its sign matches both signs.
if not config.sensu.enabled then return end

local events = {}
for _, name in ipairs(config.sensu.trigger_on or {}) do
  if name:find("^[+-]") then
    events[#events + 1] = name
  else
    events[#events + 1] = "+" .. name
    events[#events + 1] = "-" .. name
  end
end
if #events == 0 then return end

on(events, function(ev)
  return require("eventilator.sensu").notify(ev)
end)
