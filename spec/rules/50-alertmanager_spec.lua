-- The shipped rule 50-alertmanager.lua: down/up and failover events as
-- Alertmanager alerts, posted by every Sentinel to every configured URL.
local testing = require("eventilator.testing")
local json = require("cjson")

local AM1, AM2 = "http://alertmanager-1.test:9093", "http://alertmanager-2.test:9093"

describe("50-alertmanager.lua", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.shipped_rules("50-alertmanager.lua"),
                      config = { alertmanager = { enabled = true, urls = { AM1, AM2 },
                                                  labels = { cluster = "prod" } } } }
  end)
  after_each(function() t:close() end)

  it("fires RedisMasterDown on +odown, to both Alertmanagers", function()
    local r = t:call("eventilator", "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(2, #t.http.sent)
    assert.equal("POST", t.http.sent[1].method)
    assert.equal(AM1 .. "/api/v2/alerts", t.http.sent[1].url)
    assert.equal(AM2 .. "/api/v2/alerts", t.http.sent[2].url)
    local alerts = json.decode(t.http.sent[1].body)
    assert.equal(1, #alerts)
    assert.same({ alertname = "RedisMasterDown", pod = "pod1", instance = "127.0.0.1:17000",
                  role = "master", cluster = "prod" }, alerts[1].labels)
  end)

  it("resolves on -odown (endsAt set to the event's time)", function()
    local r = t:call{ argv0 = "eventilator", time = 1795600000, args = { "-odown", "master pod1 127.0.0.1 17000" } }
    assert.same({ "ok" }, r.outcomes)
    local a = json.decode(t.http.sent[1].body)[1]
    assert.equal("RedisMasterDown", a.labels.alertname)
    assert.equal(a.startsAt, a.endsAt)
  end)

  it("fires RedisFailover and resolves the old master's alerts on +switch-master", function()
    local r = t:call("eventilator", "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002")
    assert.same({ "ok" }, r.outcomes)
    local alerts = json.decode(t.http.sent[1].body)
    assert.equal(3, #alerts)
    assert.equal("RedisFailover", alerts[1].labels.alertname)
    assert.equal("127.0.0.1:17002", alerts[1].labels.instance)
    assert.equal("RedisMasterDown", alerts[2].labels.alertname)
    assert.equal("127.0.0.1:17000", alerts[2].labels.instance)
    assert.equal("RedisFailoverAborted", alerts[3].labels.alertname)
  end)

  it("succeeds when one of the pair accepts the alert", function()
    t.http.answer("POST " .. AM1 .. "/api/v2/alerts", { status = 500, body = "oops" })
    local r = t:call("eventilator", "+sdown", "slave 127.0.0.1:17000 127.0.0.1 17000 @ pod1 127.0.0.1 17002")
    assert.same({ "ok" }, r.outcomes)
    assert.equal("RedisInstanceDown", json.decode(t.http.sent[2].body)[1].labels.alertname)
  end)

  it("fails, so Sentinel retries, when no Alertmanager accepts it", function()
    t.http.answer(AM1 .. "/api/v2/alerts", { status = 500, body = "oops" })
    t.http.answer(AM2 .. "/api/v2/alerts", { err = "connection refused" })
    local r = t:call("eventilator", "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2")
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("HTTP 500", r.handlers[1].error)
  end)

  it("ignores events it does not map", function()
    assert.same({}, t:call("eventilator", "+new-epoch", "1").handlers)
    assert.same({}, t.http.sent)
  end)
end)
