-- The shipped rule 00-log.lua: every event, one info line.
local testing = require("eventilator.testing")

describe("00-log.lua", function()
  it("logs each event with its description", function()
    local t = testing.load{ rules = testing.shipped_rules("00-log.lua") }
    local r = t:call("eventilator", "+sdown", "master pod1 10.0.0.1 6379")
    assert.same({ "ok" }, r.outcomes)
    assert.matches("info: %+sdown master pod1 10%.0%.0%.1 6379", r.log)
    r = t:call("reconfigurator", "pod1", "observer", "start", "10.0.0.1", "6379", "10.0.0.2", "6379")
    assert.matches("info: client%-reconfig pod1 observer start", r.log)
    t:close()
  end)
end)
