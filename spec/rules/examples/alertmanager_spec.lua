-- examples/rules/alertmanager.lua: severity by what went down, posted once
-- across the Sentinels; the leader's client-reconfig as an info alert.
local testing = require("eventilator.testing")
local json = require("cjson")

local AM1, AM2 = "http://alertmanager-1.test:9093", "http://alertmanager-2.test:9093"
local REPLICA_DOWN = { "+sdown", "slave 127.0.0.1:17000 127.0.0.1 17000 @ pod1 127.0.0.1 17002" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel }
end

describe("alertmanager.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("alertmanager.lua"),
                      config = { alertmanager = { urls = { AM1, AM2 }, labels = { cluster = "prod-eu" } } } }
  end)
  after_each(function() t:close() end)

  it("fires a master down as critical", function()
    local r = from(t, "pid:11", { "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2" })
    assert.same({ "ok" }, r.outcomes)
    assert.equal(2, #t.http.sent)
    assert.equal(AM1 .. "/api/v2/alerts", t.http.sent[1].url)
    local a = json.decode(t.http.sent[1].body)[1]
    assert.same({ alertname = "RedisMasterDown", severity = "critical", cluster = "prod-eu", pod = "pod1",
                  instance = "127.0.0.1:17000", role = "master" }, a.labels)
  end)

  it("fires a replica down as a warning, once across the Sentinels", function()
    assert.same({ "ok" }, from(t, "pid:11", REPLICA_DOWN).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", REPLICA_DOWN).outcomes)
    assert.equal(2, #t.http.sent) -- one post, to each of the pair
    assert.equal("warning", json.decode(t.http.sent[1].body)[1].labels.severity)
  end)

  it("posts the failover from the leader only", function()
    assert.same({ "ok" }, t:call("reconfigurator", "pod1", "observer", "start",
                                 "127.0.0.1", "17000", "127.0.0.1", "17002").outcomes)
    assert.same({}, t.http.sent)
    assert.same({ "ok" }, t:call("reconfigurator", "pod1", "leader", "start",
                                 "127.0.0.1", "17000", "127.0.0.1", "17002").outcomes)
    local alerts = json.decode(t.http.sent[1].body)
    assert.equal("RedisFailover", alerts[1].labels.alertname)
    assert.equal("info", alerts[1].labels.severity)
  end)

  it("fails, so Sentinel retries, when neither Alertmanager takes it", function()
    t.http.answer(AM1 .. "/api/v2/alerts", { status = 503, body = "down" })
    t.http.answer(AM2 .. "/api/v2/alerts", { err = "connection refused" })
    local r = from(t, "pid:11", REPLICA_DOWN)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
  end)
end)
