-- The shipped rule 20-warnings.lua: down/up warnings and failed failovers
-- recorded in Redis when warnings.enabled.
local testing = require("eventilator.testing")

describe("20-warnings.lua", function()
  local rule = testing.shipped_rules("20-warnings.lua")

  it("records +odown as a warning and an aborted failover as a failure", function()
    local t = testing.load{ config = { warnings = { enabled = true } }, rules = rule }
    local r = t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2")
    assert.same({ "ok" }, r.outcomes)
    assert.same({ "SADD", "pods-with-warnings", "pod1" }, t.redis.sent[2])
    t.redis.sent = {}
    r = t:call("eventilator", "-failover-abort-no-good-slave", "master pod1 10.0.0.1 6379")
    assert.same({ "ok" }, r.outcomes)
    assert.same({ "SADD", "pods-with-failed-failovers", "pod1" }, t.redis.sent[2])
    t:close()
  end)

  it("does nothing when warnings are off (the default)", function()
    local t = testing.load{ rules = rule }
    assert.same({}, t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2").handlers)
    assert.same({}, t.redis.sent)
    t:close()
  end)
end)
