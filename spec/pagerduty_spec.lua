-- eventilator.pagerduty against a stand-in of PagerDuty's Events API v2
-- (spec/support/httpd.py /pagerduty, which checks every body against the
-- published schema), in a stock lua5.4 and through the built binary.
local procs = require("procs")
local runner = require("runner")
local rulefile = require("rulefile")
local standin = require("standin")
local defaults = require("defaults")
local json = require("cjson")

local CFG = require("hostless")
local silenced = require("silenced")
local pd = require("eventilator.pagerduty")

local KEY = "0123456789abcdef0123456789abcdef" -- 32 characters, like a real integration key

local function ev(name, extra)
  local e = { name = name, mode = "eventilator", pod = "pod1", host = "s1.example.net", time = 1772352307.25,
    text = "master pod1 10.0.0.5 6379", args = { name, "master pod1 10.0.0.5 6379" },
    instance = { type = "master", name = "pod1", ip = "10.0.0.5", port = 6379 },
    master = { name = "pod1", ip = "10.0.0.5", port = 6379 } }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

describe("pagerduty", function()
  local S

  setup(function() S = standin.start() end)
  teardown(function() S.stop() end)

  before_each(function()
    S.reset()
    CFG.pagerduty = defaults().pagerduty
    CFG.pagerduty.routing_key = KEY
    CFG.pagerduty.url = S.url .. "/pagerduty/v2/enqueue"
    CFG.pagerduty.timeout = 2
  end)

  it("does nothing until pagerduty.enabled", function()
    local cfg = defaults()
    assert.same({}, (rulefile("51-pagerduty.lua", cfg)))
    cfg.pagerduty.enabled = true
    assert.equal(1, #rulefile("51-pagerduty.lua", cfg))
  end)

  it("trigger and resolve pair by dedup_key, and every body fits the schema", function()
    assert.is_true(pd.notify(ev("+odown", { votes = 2, quorum = 3 })))
    assert.is_true(pd.notify(ev("-odown")))
    local r = S.requests()
    assert.equal(2, #r)
    local t, res = json.decode(r[1].body), json.decode(r[2].body)
    assert.equal("POST", r[1].method)
    assert.matches("^application/json", r[1].headers["content-type"])
    assert.equal(KEY, t.routing_key)
    assert.equal("trigger", t.event_action)
    assert.equal("resolve", res.event_action)
    assert.equal("redis/pod1/odown", t.dedup_key)
    assert.equal(t.dedup_key, res.dedup_key)
    assert.equal("master pod1 (10.0.0.5:6379) is objectively down (2 of quorum 3 agree)", t.payload.summary)
    assert.equal("10.0.0.5:6379", t.payload.source)
    assert.equal("critical", t.payload.severity)
    assert.equal("pod1", t.payload.component)
    assert.equal("pod1", t.payload.group)
    assert.equal("2026-03-01T08:05:07.250Z", t.payload.timestamp)
    assert.equal("+odown", t.payload.custom_details.name)
    assert.equal("s1.example.net", t.payload.custom_details.host)
    assert.equal(2, t.payload.custom_details.votes)
  end)

  it("sdown is per instance; a failover abort is closed by the switch", function()
    local rep = { type = "slave", name = "10.0.0.7:6380", ip = "10.0.0.7", port = 6380 }
    assert.is_true(pd.notify(ev("+sdown", { instance = rep })))
    assert.is_true(pd.notify(ev("-failover-abort-no-good-slave")))
    assert.is_true(pd.notify(ev("+switch-master", { instance = false, text = "pod1 10.0.0.5 6379 10.0.0.6 6379",
      old_master = { ip = "10.0.0.5", port = 6379 }, new_master = { ip = "10.0.0.6", port = 6379 } })))
    assert.is_true(pd.notify(ev("+new-epoch"))) -- no meaning for PagerDuty: nothing sent
    local r = S.requests()
    assert.equal(4, #r)
    local b = {}
    for i, q in ipairs(r) do b[i] = json.decode(q.body) end
    assert.equal("redis/pod1/sdown/10.0.0.7:6380", b[1].dedup_key)
    assert.equal("10.0.0.7:6380", b[1].payload.source)
    assert.same({ "trigger", "redis/pod1/failover" }, { b[2].event_action, b[2].dedup_key })
    -- no -odown comes for a master that moved: the switch closes it too
    assert.same({ "resolve", "redis/pod1/odown" }, { b[3].event_action, b[3].dedup_key })
    assert.same({ "resolve", "redis/pod1/failover" }, { b[4].event_action, b[4].dedup_key })
  end)

  it("sends nothing for a silenced pod, whichever way it is called; one line per event", function()
    local q = silenced.start(CFG, { pod = "pod1" })
    finally(q.stop)
    assert.is_true(pd.notify(ev("+odown", { votes = 2, quorum = 3 })))
    assert.is_true(pd.notify(ev("+switch-master", { old_master = { ip = "10.0.0.5", port = 6379 },
      new_master = { ip = "10.0.0.6", port = 6379 } })))
    assert.is_true(pd.trigger(ev("-failover-abort-no-good-slave")))
    assert.is_true(pd.resolve(ev("-odown")))
    assert.is_true(pd.notify(ev("+new-epoch"))) -- nothing to send: no store round trip, no line
    assert.equal(0, #S.requests())
    local _, lines = q.log():gsub("silenced by " .. q.id, "")
    assert.equal(4, lines, q.log())
    assert.matches("info: pagerduty: +switch-master pod1 silenced by " .. q.id, q.log(), 1, true)
  end)

  it("a 429 or a 5xx fails, so Sentinel retries", function()
    S.reply({ status = 429, body = { status = "throttle event", message = "Requests for this service are arriving too quickly" } })
    local ok, err = pd.trigger(ev("+odown"))
    assert.is_nil(ok)
    assert.matches("HTTP 429", err)
    S.reply({ status = 503, body = "unavailable" })
    ok, err = pd.trigger(ev("+odown"))
    assert.is_nil(ok)
    assert.matches("HTTP 503", err)
  end)

  it("without a routing key, fails saying which key to set", function()
    CFG.pagerduty.routing_key = nil
    local ok, err = pd.trigger(ev("+odown"))
    assert.is_nil(ok)
    assert.matches("pagerduty%.routing_key", err)
    assert.equal(0, #S.requests())
  end)

  describe("through the binary", function()
    local ctx
    before_each(function()
      ctx = runner.new()
      os.execute(string.format("cp %s/rules/51-pagerduty.lua %s/", procs.quote(procs.src), procs.quote(ctx.rules)))
    end)
    after_each(function() ctx:cleanup() end)

    local function conf(extra)
      ctx:config(string.format("pagerduty = { enabled = true, routing_key = %q, url = %q, timeout = 2%s }",
        KEY, S.url .. "/pagerduty/v2/enqueue", extra or ""))
    end

    it("429: exit 1", function()
      conf()
      S.reply({ status = 429, body = { status = "throttle event" } })
      local rc, log = ctx:run("eventilator", "+odown", "master pod1 10.0.0.5 6379 #quorum 2/3")
      assert.equal(1, rc, log)
      assert.matches("HTTP 429", log)
    end)

    it("400: logged at error level with PagerDuty's reason, not retried (exit 0)", function()
      conf(', severity = "urgent"') -- not a severity PagerDuty knows: the stand-in answers 400
      local rc, log = ctx:run("eventilator", "+odown", "master pod1 10.0.0.5 6379 #quorum 2/3")
      assert.equal(0, rc, log)
      assert.matches("error: pagerduty: trigger redis/pod1/odown was rejected for good " ..
        "%(HTTP 400: .-payload%.severity.-%); not retried", log)
      assert.equal(1, #S.requests())
    end)
  end)
end)
