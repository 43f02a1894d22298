-- The shipped rule 30-slack.lua: trigger_on events to the Slack webhook.
local testing = require("eventilator.testing")
local json = require("cjson")

describe("30-slack.lua", function()
  local hook = "https://hooks.slack.test/services/T0/B0/X"
  local t
  before_each(function()
    t = testing.load{ rules = testing.shipped_rules("30-slack.lua"),
                      config = { slack = { enabled = true, webhook_url = hook } } }
  end)
  after_each(function() t:close() end)

  it("posts +odown to the webhook", function()
    t.http.answer("POST " .. hook, { status = 200, body = "ok" })
    local r = t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(1, #t.http.sent)
    assert.equal(hook, t.http.sent[1].url)
    assert.is_table(json.decode(t.http.sent[1].body))
  end)

  it("fails when Slack answers 500, so Sentinel retries", function()
    t.http.answer(hook, { status = 500, body = "oops" })
    local r = t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2")
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
  end)

  it("posts nothing for a silenced pod until the silence ends; a store that is down means post", function()
    local silence = require("eventilator.silence") -- the stand-in store keeps it (t.redis)
    local s = assert(silence.add{ pod = "pod1", seconds = 1800, comment = "planned failover", author = "ops" })
    local r = t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2")
    assert.same({ "ok" }, r.outcomes)
    assert.same({}, t.http.sent)
    assert.matches("slack: +odown pod1 silenced by " .. s.id .. " (planned failover, by ops", r.log, 1, true)
    t.redis.time = os.time() + 1800 -- the store's clock, past the silence's end
    assert.same({ "ok" }, t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2").outcomes)
    assert.equal(1, #t.http.sent)
    t.redis.time = nil
    assert(silence.add{ pod = "pod1", seconds = 1800, comment = "again" })
    t.redis.fail("connection refused")
    r = t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(2, #t.http.sent)
    assert.matches("silences: store unreachable (connection refused): not silenced", r.log, 1, true)
  end)

  it("ignores events not in trigger_on", function()
    assert.same({}, t:call("eventilator", "+new-epoch", "7").handlers)
    assert.same({}, t.http.sent)
  end)
end)
