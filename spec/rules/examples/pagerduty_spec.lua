-- examples/rules/pagerduty.lua: critical for the on-call pods, warning for
-- the others; each trigger and resolve sent once across the Sentinels.
local testing = require("eventilator.testing")
local json = require("cjson")

local PD = "https://events.pagerduty.com/v2/enqueue"

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel }
end

describe("pagerduty.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("pagerduty.lua"),
                      config = { pagerduty = { routing_key = "R0UT1NGK3Y" },
                                 oncall = { pods = { "sessions", "payments" } } } }
    t.http.answer("POST " .. PD, { status = 202, body = '{"status":"success"}' })
  end)
  after_each(function() t:close() end)

  it("pages critical for an on-call pod, once across the Sentinels", function()
    -- each Sentinel counted its own votes: one event all the same
    assert.same({ "ok" }, from(t, "pid:11", { "+odown", "master sessions 127.0.0.1 17000 #quorum 2/2" }).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", { "+odown", "master sessions 127.0.0.1 17000 #quorum 3/2" }).outcomes)
    assert.equal(1, #t.http.sent)
    assert.equal(PD, t.http.sent[1].url)
    local body = json.decode(t.http.sent[1].body)
    assert.same({ "R0UT1NGK3Y", "trigger", "redis/sessions/odown", "critical" },
                { body.routing_key, body.event_action, body.dedup_key, body.payload.severity })
  end)

  it("opens a warning for the other pods", function()
    from(t, "pid:11", { "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2" })
    assert.equal("warning", json.decode(t.http.sent[1].body).payload.severity)
  end)

  it("resolves the failover on +switch-master", function()
    local r = from(t, "pid:11", { "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002" })
    assert.same({ "ok" }, r.outcomes)
    local body = json.decode(t.http.sent[1].body)
    assert.same({ "resolve", "redis/pod1/failover" }, { body.event_action, body.dedup_key })
  end)

  it("fails, so Sentinel retries, when PagerDuty answers 503", function()
    t.http.answer("POST " .. PD, { status = 503, body = "unavailable" })
    local r = from(t, "pid:11", { "-odown", "master pod1 127.0.0.1 17000" })
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
  end)
end)
