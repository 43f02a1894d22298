-- eventilator.sensu against the TCP stand-in (spec/support/tcpd.py) playing
-- the Sensu client socket: the check results as sent, "ok", "invalid",
-- silence, and the events it skips.
local procs = require("procs")
local rulefile = require("rulefile")
local json = require("cjson")

local CFG = require("hostless") -- the config the modules see
local silenced = require("silenced")

local sensu = require("eventilator.sensu")

local function ev(name, extra)
  local e = {
    name = name, mode = "eventilator", pod = "web_cache_1",
    host = "sentinel1.example.com", time = 1772352307.5,
    instance = { type = "master", name = "web_cache_1", ip = "10.0.0.5", port = 6379 },
    master = { name = "web_cache_1", ip = "10.0.0.5", port = 6379 },
  }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

describe("eventilator.sensu", function()
  local dir
  local servers = {}

  -- Start tcpd.py; returns port, log file.
  local function start(mode, extra)
    local logf = string.format("%s/%s-%d.jsonl", dir, mode, #servers + 1)
    local ready = logf .. ".ready"
    local pid = procs.spawn(string.format("python3 %s --mode %s --port 0 --log %s --ready %s %s",
      procs.quote(procs.src .. "/spec/support/tcpd.py"), mode, procs.quote(logf), procs.quote(ready),
      extra or ""), logf .. ".out")
    servers[#servers + 1] = pid
    return procs.ready_port(pid, ready, "tcpd.py " .. mode, logf .. ".out"), logf
  end

  local function received(logf)
    local out = {}
    for l in (procs.read(logf) or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(l) end
    return out
  end

  local ok_port, ok_log

  setup(function()
    dir = procs.tmpdir()
    ok_port, ok_log = start("sensu")
  end)

  teardown(function()
    for _, pid in ipairs(servers) do procs.halt(pid) end
    procs.rmtree(dir)
  end)

  before_each(function()
    os.remove(ok_log)
    CFG.sensu = { enabled = true, host = "127.0.0.1", port = ok_port, timeout = 1,
      trigger_on = { "+odown", "-odown", "-failover-abort-no-good-slave" },
      handler_no_good_slave = "zendesk", handler_promoted_slave = "mailer" }
  end)

  it("sends +odown as redis-master-down, status 1, with the ZenDesk fields", function()
    assert.is_true(sensu.notify(ev("+odown", { votes = 2, quorum = 3 })))
    local got = received(ok_log)
    assert.equal(1, #got)
    assert.same({
      name = "redis-master-down", status = 1, source = "pod-web_cache_1", occurrences = 1,
      output = "Pod web_cache_1 has a non-responsive Master (10.0.0.5:6379, 2/3 sentinels agree)",
      host = "sentinel1.example.com",
      zd_subject = "Monitoring alert for web_cache_1 Master Down",
      zd_description = "Pod web_cache_1 has a non-responsive Master",
      zd_set_tags = "monitoring redis_master_odown",
    }, got[1].json)
  end)

  it("resolves it with -odown: same name and source, status 0", function()
    assert.is_true(sensu.notify(ev("-odown")))
    local r = received(ok_log)[1].json
    assert.equal("redis-master-down", r.name)
    assert.equal("pod-web_cache_1", r.source)
    assert.equal(0, r.status)
    assert.is_nil(r.handlers)
  end)

  it("sends -failover-abort-no-good-slave as status 2 with handler_no_good_slave", function()
    assert.is_true(sensu.notify(ev("-failover-abort-no-good-slave")))
    local r = received(ok_log)[1].json
    assert.equal("sentinel-failover-status", r.name)
    assert.equal(2, r.status)
    assert.same({ "zendesk" }, r.handlers)
    assert.equal(1, r.occurrences)
    assert.equal("Pod web_cache_1 has a non-responsive Master and no promotable slave", r.output)
    assert.equal("Monitoring alert for web_cache_1 Failover Failure", r.zd_subject)
    assert.equal("Pod web_cache_1 Is in Aborted Failover State", r.zd_description)
    assert.equal("monitoring redis_pod_down", r.zd_set_tags)
  end)

  it("resolves it with +promoted-slave and +switch-master, with handler_promoted_slave", function()
    assert.is_true(sensu.notify(ev("+promoted-slave", {
      instance = { type = "slave", name = "10.0.0.6:6379", ip = "10.0.0.6", port = 6379 } })))
    assert.is_true(sensu.notify(ev("+switch-master", { instance = false, master = false,
      old_master = { ip = "10.0.0.5", port = 6379 }, new_master = { ip = "10.0.0.6", port = 6379 } })))
    local got = received(ok_log)
    assert.equal(2, #got)
    for _, g in ipairs(got) do
      assert.equal("sentinel-failover-status", g.json.name)
      assert.equal(0, g.json.status)
      assert.equal("pod-web_cache_1", g.json.source)
      assert.same({ "mailer" }, g.json.handlers)
    end
    assert.equal("Pod web_cache_1 failed over: replica 10.0.0.6:6379 promoted to master", got[1].json.output)
    assert.equal("Pod web_cache_1 failed over from 10.0.0.5:6379 to 10.0.0.6:6379", got[2].json.output)
  end)

  it("skips events it has no check result for", function()
    for _, name in ipairs({ "+sdown", "-sdown", "+failover-end", "+made-up" }) do
      assert.is_true(sensu.notify(ev(name)))
    end
    assert.equal(0, #received(ok_log))
  end)

  it("sends nothing for an event a silence matches, and succeeds", function()
    local q = silenced.start(CFG, { pod = "web_cache_1", event = "+odown" })
    finally(q.stop)
    assert.is_true(sensu.notify(ev("+odown")))
    assert.equal(0, #received(ok_log))
    assert.matches("info: sensu: +odown web_cache_1 silenced by " .. q.id, q.log(), 1, true)
    assert.is_true(sensu.notify(ev("-odown"))) -- the pattern is +odown alone
    assert.equal(1, #received(ok_log))
  end)

  it("fails when the client answers invalid", function()
    local port = start("sensu", "--reply invalid")
    CFG.sensu.port = port
    local ok, err = sensu.notify(ev("+odown"))
    assert.is_nil(ok)
    assert.matches("invalid", err)
  end)

  it("fails when the client never answers, within the timeout", function()
    local port, logf = start("silent")
    CFG.sensu.port = port
    local t0 = procs.now()
    local ok, err = sensu.notify(ev("+odown"))
    local took = procs.now() - t0
    assert.is_nil(ok)
    assert.matches("no reply", err)
    assert.is_true(took < 4, "took " .. took .. " s")
    procs.wait(function() return #received(logf) > 0 end, 5, "payload logged")
    assert.equal("redis-master-down", json.decode(received(logf)[1].data).name)
  end)

  it("fails when nothing listens", function()
    CFG.sensu.port = procs.closed_port()
    local ok, err = sensu.notify(ev("+odown"))
    assert.is_nil(ok)
    assert.matches("^sensu: ", err)
  end)

  it("takes per-call options, handlers as a list too", function()
    CFG.sensu.port = procs.closed_port() -- would fail
    local opts = { port = ok_port, handler_no_good_slave = { "pd", "mail" } }
    assert.is_true(sensu.notify(ev("-failover-abort-no-good-slave"), opts))
    assert.same({ "pd", "mail" }, received(ok_log)[1].json.handlers)
  end)

  describe("default rule", function()
    local function load_rule(config) return rulefile("40-sensu.lua", config) end

    it("registers nothing when disabled, trigger_on when enabled", function()
      assert.same({}, load_rule({ sensu = { enabled = false, trigger_on = { "+odown" } } }))
      local r = load_rule({ sensu = { enabled = true,
        trigger_on = { "+odown", "-odown", "switch-master" } } })
      assert.same({ "+odown", "-odown", "*switch-master" }, r[1].pattern)
    end)
  end)
end)
