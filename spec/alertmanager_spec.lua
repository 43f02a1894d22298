-- eventilator.alertmanager and rules/50-alertmanager.lua against a real
-- Alertmanager (spec/support/alertmanager.lua), through the built binary as
-- Sentinel runs it.
local procs = require("procs")
local runner = require("runner")
local rulefile = require("rulefile")
local alertmanager = require("alertmanager")
local defaults = require("defaults")

local ODOWN = "master pod1 10.0.0.5 6379 #quorum 2/3"
local SDOWN = "slave 10.0.0.7:6380 10.0.0.7 6380 @ pod1 10.0.0.5 6379"

describe("alertmanager", function()
  local am, ctx

  setup(function()
    am = alertmanager.start()
  end)

  teardown(function()
    if am then am.stop() end
  end)

  before_each(function()
    ctx = runner.new()
    os.execute(string.format("cp %s/rules/50-alertmanager.lua %s/", procs.quote(procs.src), procs.quote(ctx.rules)))
    ctx:config(string.format([[
      alertmanager = { enabled = true, urls = { %q }, labels = { cluster = "test-eu", severity = "page" },
                       generator_url = "https://runbooks.example.net/redis", timeout = 2 }
    ]], am.url))
  end)

  after_each(function()
    ctx:cleanup()
  end)

  it("does nothing until alertmanager.enabled", function()
    local cfg = defaults()
    assert.is_false(cfg.alertmanager.enabled)
    assert.same({}, (rulefile("50-alertmanager.lua", cfg)))
    cfg.alertmanager.enabled = true
    assert.equal(1, #rulefile("50-alertmanager.lua", cfg))
  end)

  it("+odown fires RedisMasterDown with the labels; -odown resolves it", function()
    local rc, log = ctx:run("eventilator", "+odown", ODOWN)
    assert.equal(0, rc, log)
    local found = am.find("RedisMasterDown")
    assert.equal(1, #found, log)
    local a = found[1]
    assert.equal("active", a.status.state)
    assert.same({ alertname = "RedisMasterDown", pod = "pod1", instance = "10.0.0.5:6379", role = "master",
                  cluster = "test-eu", severity = "page" }, a.labels)
    assert.matches("master pod1 %(10%.0%.0%.5:6379%) is objectively down %(2 of quorum 3 agree%)",
      a.annotations.summary)
    assert.matches("reported %+odown " .. ODOWN:gsub("%p", "%%%0"), a.annotations.description)
    assert.equal("https://runbooks.example.net/redis", a.generatorURL)

    rc, log = ctx:run("eventilator", "-odown", "master pod1 10.0.0.5 6379")
    assert.equal(0, rc, log)
    assert.same({}, am.find("RedisMasterDown"))
  end)

  it("+sdown/-sdown fire and resolve RedisInstanceDown per instance", function()
    assert.equal(0, (ctx:run("eventilator", "+sdown", SDOWN)))
    assert.equal(0, (ctx:run("eventilator", "+sdown",
      "sentinel 3e0933e0f052beed0ad6b16337529bae22b2c1f9 10.0.0.8 26379 @ pod1 10.0.0.5 6379")))
    local by = {}
    for _, a in ipairs(am.find("RedisInstanceDown")) do by[a.labels.instance] = a.labels end
    assert.equal("replica", by["10.0.0.7:6380"].role)
    assert.equal("sentinel", by["10.0.0.8:26379"].role)
    assert.equal("pod1", by["10.0.0.8:26379"].pod)
    assert.equal(0, (ctx:run("eventilator", "-sdown", SDOWN)))
    local left = am.find("RedisInstanceDown")
    assert.equal(1, #left)
    assert.equal("10.0.0.8:26379", left[1].labels.instance)
  end)

  it("a failover abort fires RedisFailoverAborted; the leader's failover sends RedisFailover, resolves the old master's",
    function()
      assert.equal(0, (ctx:run("eventilator", "+odown", "master pod2 10.0.1.5 6379 #quorum 2/3")))
      assert.equal(0, (ctx:run("eventilator", "-failover-abort-no-good-slave", "master pod2 10.0.1.5 6379")))
      local ab = am.find("RedisFailoverAborted")
      assert.equal(1, #ab)
      assert.equal("10.0.1.5:6379", ab[1].labels.instance)
      -- an observer's client-reconfig posts nothing
      local rc, log = ctx:run("reconfigurator", "pod2", "observer", "start", "10.0.1.5", "6379", "10.0.1.6", "6379")
      assert.equal(0, rc, log)
      assert.same({}, am.find("RedisFailover"))
      rc, log = ctx:run("reconfigurator", "pod2", "leader", "start", "10.0.1.5", "6379", "10.0.1.6", "6379")
      assert.equal(0, rc, log)
      local f = am.find("RedisFailover")
      assert.equal(1, #f)
      assert.same({ alertname = "RedisFailover", pod = "pod2", instance = "10.0.1.6:6379", role = "master",
                    cluster = "test-eu", severity = "page" }, f[1].labels)
      assert.same({}, am.find("RedisFailoverAborted"))
      assert.same({}, am.find("RedisMasterDown")) -- no -odown comes for a master that moved
      -- +switch-master from the other Sentinels: the same alert, not a second one
      assert.equal(0, (ctx:run("eventilator", "+switch-master", "pod2 10.0.1.5 6379 10.0.1.6 6379")))
      assert.equal(1, #am.find("RedisFailover"))
    end)

  it("two Alertmanagers, one down: the call still succeeds", function()
    local down = "http://127.0.0.1:" .. procs.closed_port()
    ctx:config(string.format("alertmanager = { enabled = true, urls = { %q, %q }, timeout = 2 }", down, am.url))
    local rc, log = ctx:run("eventilator", "+odown", "master pod3 10.0.2.5 6379 #quorum 2/3")
    assert.equal(0, rc, log)
    assert.equal(1, #am.find("RedisMasterDown"))
    assert.matches("another Alertmanager accepted", log)
    assert.equal(0, (ctx:run("eventilator", "-odown", "master pod3 10.0.2.5 6379")))
  end)

  it("a down Alertmanager alone: exit 1, and the log says why", function()
    local down = "http://127.0.0.1:" .. procs.closed_port()
    ctx:config(string.format("alertmanager = { enabled = true, urls = { %q }, timeout = 2 }", down))
    local rc, log = ctx:run("eventilator", "+odown", "master pod4 10.0.3.5 6379 #quorum 2/3")
    assert.equal(1, rc, log)
    assert.matches("50%-alertmanager%.lua:%d+ failed: returned nil, alertmanager: http POST " .. down:gsub("%p", "%%%0"), log)
  end)

  it("a silence added with the CLI: no alert for that pod, exit 0, the log names it; another pod alerts", function()
    local store = procs.start_redis()
    finally(store.stop)
    ctx:config(string.format("alertmanager = { enabled = true, urls = { %q }, timeout = 2 }\nredis = { port = %d }",
      am.url, store.port))
    local rc, _, id = ctx:run("eventilator", "silence", "add", "--pod", "pod5", "--for", "10m", "--comment", "planned")
    assert.equal(0, rc)
    id = id:gsub("%s+$", "")
    local log
    rc, log = ctx:run("eventilator", "+odown", "master pod5 10.0.4.5 6379 #quorum 2/3")
    assert.equal(0, rc, log)
    assert.matches("info: alertmanager: +odown pod5 silenced by " .. id .. " (planned, by ", log, 1, true)
    rc, log = ctx:run("eventilator", "+odown", "master pod6 10.0.5.5 6379 #quorum 2/3")
    assert.equal(0, rc, log)
    local pods = {}
    for _, a in ipairs(am.find("RedisMasterDown")) do pods[a.labels.pod] = true end
    assert.is_nil(pods.pod5)
    assert.is_true(pods.pod6)
    assert.equal(0, (ctx:run("eventilator", "-odown", "master pod6 10.0.5.5 6379")))
  end)
end)
