-- examples/rules/flap-migrate.lua: a replica that goes down flap.threshold
-- times within flap.window is reported to Slack and Alertmanager and
-- replaced in Docker.
local testing = require("eventilator.testing")
local json = require("cjson")

local T = 1795600000
local SLACK = "https://hooks.slack.test/services/T0/B0/X"
local AM = "http://alertmanager.test:9093"
local API = "http://localhost/v1.41"
local CREATE = API .. "/containers/create?name=redis-pod1-" .. T
local REPLICA_DOWN = { "+sdown", "slave 127.0.0.1:17000 127.0.0.1 17000 @ pod1 127.0.0.1 17002" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel, time = T }
end

-- The Redis store's answers to the two scripts of eventilator.flap: track
-- (count within the window, crossed 0/1) and limit (the count, -1 past max).
local function store(t, count, crossed)
  t.redis.answer("EVAL", function(_, script)
    if script:find("ZCARD", 1, true) then return { count, crossed } end
    return 1
  end)
end

describe("flap-migrate.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("flap-migrate.lua"),
                      config = { flap = { window = 600, threshold = 3, cooldown = 3600 },
                                 swarm = { image = "redis:7", max_per_hour = 3 },
                                 slack = { webhook_url = SLACK },
                                 alertmanager = { urls = { AM } } } }
    t.http.answer("POST " .. CREATE, { status = 201, body = '{"Id":"c0ffee","Warnings":[]}' })
    t.http.answer("POST " .. API .. "/containers/c0ffee/start", { status = 204 })
  end)
  after_each(function() t:close() end)

  it("only counts a replica that went down less than threshold times", function()
    store(t, 2, 0)
    assert.same({ "ok" }, from(t, "pid:11", REPLICA_DOWN).outcomes)
    assert.same({}, t.http.sent)
    local eval = t.redis.sent[#t.redis.sent]
    assert.same({ "EVAL", "2", "eventilator:flap:pod1:127.0.0.1:17000:downs" }, { eval[1], eval[3], eval[4] })
  end)

  it("reports and replaces a flapping replica, once across the Sentinels", function()
    store(t, 3, 1)
    assert.same({ "ok" }, from(t, "pid:11", REPLICA_DOWN).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", REPLICA_DOWN).outcomes)
    assert.equal(4, #t.http.sent)
    assert.equal(SLACK, t.http.sent[1].url)
    assert.matches("went down 3 times in 600 s", json.decode(t.http.sent[1].body).text)
    assert.equal(AM .. "/api/v2/alerts", t.http.sent[2].url)
    assert.same({ alertname = "RedisReplicaFlapping", pod = "pod1", instance = "127.0.0.1:17000" },
                json.decode(t.http.sent[2].body)[1].labels)
    assert.equal(CREATE, t.http.sent[3].url)
    assert.same({ "redis-server", "--replicaof", "127.0.0.1", "17002" }, json.decode(t.http.sent[3].body).Cmd)
    assert.equal(API .. "/containers/c0ffee/start", t.http.sent[4].url)
  end)

  it("fails, so Sentinel retries, when the store is down", function()
    t.redis.fail("connection refused")
    local r = from(t, "pid:11", REPLICA_DOWN)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.same({}, t.http.sent)
  end)

  it("fails when Docker cannot start the replacement", function()
    store(t, 3, 1)
    t.http.answer("POST " .. CREATE, { status = 500, body = '{"message":"no space left on device"}' })
    local r = from(t, "pid:11", REPLICA_DOWN)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
  end)
end)
