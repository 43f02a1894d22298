-- The shipped rule 51-pagerduty.lua: +odown triggers, -odown and the
-- completed failover resolve, through PagerDuty's Events API v2.
local testing = require("eventilator.testing")
local json = require("cjson")

local PD = "https://events.pagerduty.com/v2/enqueue"

describe("51-pagerduty.lua", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.shipped_rules("51-pagerduty.lua"),
                      config = { pagerduty = { enabled = true, routing_key = "R0UT1NGK3Y" } } }
  end)
  after_each(function() t:close() end)

  it("triggers an incident on +odown", function()
    t.http.answer("POST " .. PD, { status = 202, body = '{"status":"success"}' })
    local r = t:call("eventilator", "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(1, #t.http.sent)
    assert.equal("POST", t.http.sent[1].method)
    assert.equal(PD, t.http.sent[1].url)
    local body = json.decode(t.http.sent[1].body)
    assert.equal("R0UT1NGK3Y", body.routing_key)
    assert.equal("trigger", body.event_action)
    assert.equal("redis/pod1/odown", body.dedup_key)
    assert.equal("critical", body.payload.severity)
    assert.equal("127.0.0.1:17000", body.payload.source)
  end)

  it("resolves the master-down and failover incidents on +switch-master", function()
    local r = t:call("eventilator", "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(2, #t.http.sent)
    local a, b = json.decode(t.http.sent[1].body), json.decode(t.http.sent[2].body)
    assert.same({ "resolve", "redis/pod1/odown" }, { a.event_action, a.dedup_key })
    assert.same({ "resolve", "redis/pod1/failover" }, { b.event_action, b.dedup_key })
  end)

  it("fails, so Sentinel retries, when PagerDuty answers 500", function()
    t.http.answer(PD, { status = 500, body = "unavailable" })
    local r = t:call("eventilator", "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2")
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("HTTP 500", r.handlers[1].error)
  end)

  it("does not retry an event PagerDuty rejects for good (400)", function()
    t.http.answer(PD, { status = 400, body = '{"message":"Invalid routing key"}' })
    local r = t:call("eventilator", "-odown", "master pod1 127.0.0.1 17000")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(0, r.exit)
    assert.matches("rejected for good", r.log)
  end)

  it("leaves +sdown alone", function()
    assert.same({}, t:call("eventilator", "+sdown", "master pod1 127.0.0.1 17000").handlers)
  end)
end)
