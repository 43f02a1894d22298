-- Silences through the built binary, as Sentinel runs it, with a private
-- redis-server as config.redis and stand-ins for Slack, PagerDuty,
-- Alertmanager, the webhook (spec/support/httpd.py) and Sensu (tcpd.py), a
-- real HAProxy and the Docker stand-in: the receivers send nothing a silence
-- matches and say which silence; the reactions run regardless; rules can
-- ask silence.match(ev); a store that is down means "not silenced"; and a
-- call that reaches no receiver never asks the store.
local procs = require("procs")
local runner = require("runner")
local standin = require("standin")
local haproxy_proc = require("haproxy")
local json = require("cjson")

local CFG = require("hostless") -- for reading HAProxy's state with eventilator.haproxy
local haproxy = require("eventilator.haproxy")

local KEY = "0123456789abcdef0123456789abcdef"
local ODOWN1 = { "+odown", "master pod1 127.0.0.1 7001 #quorum 2/3" }
local SWITCH1 = { "+switch-master", "pod1 127.0.0.1 7001 127.0.0.1 7002" }
local LEADER1 = { "pod1", "leader", "start", "127.0.0.1", "7001", "127.0.0.1", "7002" }
local ODOWN2 = { "+odown", "master pod2 127.0.0.1 7011 #quorum 2/3" }

local function count(text, plain)
  local n, i = 0, 1
  while true do
    local s, e = text:find(plain, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

describe("silences", function()
  local ctx, store, S, sensu_port, sensu_log, sensu_pid, dir

  setup(function()
    store = procs.start_redis()
    S = standin.start()
    dir = procs.tmpdir()
    sensu_log = dir .. "/sensu.jsonl"
    sensu_pid = procs.spawn(string.format("python3 %s --mode sensu --port 0 --log %s --ready %s",
      procs.quote(procs.src .. "/spec/support/tcpd.py"), procs.quote(sensu_log),
      procs.quote(dir .. "/sensu.ready")), dir .. "/sensu.out")
    sensu_port = procs.ready_port(sensu_pid, dir .. "/sensu.ready", "tcpd.py sensu", dir .. "/sensu.out")
  end)
  teardown(function()
    procs.kill(sensu_pid)
    S.stop()
    store.stop()
    procs.rmtree(dir)
  end)

  before_each(function()
    procs.cli(store.port, "FLUSHALL")
    procs.cli(store.port, "CONFIG", "RESETSTAT")
    S.reset()
    os.remove(sensu_log)
    ctx = runner.new()
    procs.shipped_rules(ctx.rules)
  end)
  after_each(function() ctx:cleanup() end)

  local function cli(...) return procs.cli(store.port, ...) end

  -- The config: the store, and the named receivers enabled against the stand-ins.
  local RECEIVERS = {
    slack = function() return string.format("slack = { enabled = true, webhook_url = %q }", S.url .. "/slack") end,
    sensu = function() return string.format("sensu = { enabled = true, port = %d }", sensu_port) end,
    pagerduty = function()
      return string.format("pagerduty = { enabled = true, routing_key = %q, url = %q }", KEY,
        S.url .. "/pagerduty/v2/enqueue")
    end,
    alertmanager = function()
      return string.format("alertmanager = { enabled = true, urls = { %q } }", S.url .. "/am")
    end,
    webhook = function() return string.format("webhook = { enabled = true, url = %q }", S.url .. "/hook") end,
  }
  local ALL = { "slack", "sensu", "pagerduty", "alertmanager", "webhook" }
  local function config(receivers, extra, port)
    local lines = { string.format("redis = { port = %d, timeout = 1 }", port or store.port) }
    for _, r in ipairs(receivers) do lines[#lines + 1] = RECEIVERS[r]() end
    for _, l in ipairs(extra or {}) do lines[#lines + 1] = l end
    ctx:config(table.concat(lines, "\n"))
  end

  local function add(...)
    local rc, _, out = ctx:run("eventilator", "silence", "add", ...)
    assert.equal(0, rc, procs.read(ctx.dir .. "/stderr"))
    return (out:gsub("%s+$", ""))
  end

  -- What the stand-ins got: { "/slack", "/hook", ..., "sensu" } in order.
  local function sent()
    local out = {}
    for _, r in ipairs(S.requests()) do out[#out + 1] = r.path end
    for _ in (procs.read(sensu_log) or ""):gmatch("[^\n]+") do out[#out + 1] = "sensu" end
    table.sort(out)
    return out
  end

  local function evals() return tonumber(cli("INFO", "commandstats"):match("cmdstat_eval:calls=(%d+)") or "0") end

  describe("receivers are silenced; reactions are not", function()
    local hp, docker_dir, docker_pid
    before_each(function()
      hp = haproxy_proc.start({ backends = { redis = { master = 7001 } } })
      docker_dir = procs.tmpdir()
      docker_pid = procs.spawn(string.format("env -u LD_PRELOAD python3 %s --unix %s --log %s --dir %s --service cache",
        procs.quote(procs.src .. "/spec/support/dockerd.py"), procs.quote(docker_dir .. "/docker.sock"),
        procs.quote(docker_dir .. "/docker.jsonl"), procs.quote(docker_dir)), docker_dir .. "/dockerd.out")
      procs.wait(function() return procs.read(docker_dir .. "/dockerd.out") ~= nil
        and procs.sh("test -S " .. procs.quote(docker_dir .. "/docker.sock") .. " && echo y"):match("y") end,
        30, "dockerd.py socket")
      procs.shipped_rules(ctx.rules, "consul-master-kv.lua", "haproxy-follow-master.lua")
      ctx:rule("60-docker.lua", [[
        on("+switch-master", function() return require("eventilator.docker").scale("cache", 1) end)
      ]])
      config(ALL, {
        "metrics = { enabled = true }", "warnings = { enabled = true }", "stream = { enabled = true }",
        string.format("consul = { url = %q }", S.url),
        string.format("haproxy = { socket = %q, backends = { pod1 = \"redis/master\" } }", hp.socket),
        string.format("docker = { socket = %q }", docker_dir .. "/docker.sock"),
      })
    end)
    after_each(function()
      hp.stop()
      procs.kill(docker_pid)
      procs.rmtree(docker_dir)
    end)

    it("a failover of a silenced pod: no receiver sends, each logs the silence; every reaction runs", function()
      S.reply({ status = 200, body = "true" }) -- Consul's answer to a PUT; any 2xx will do for the others
      local id = add("--pod", "pod1", "--for", "30m", "--comment", "planned failover", "--author", "alice")
      local rc, log = ctx:run("eventilator", table.unpack(ODOWN1))
      assert.equal(0, rc, log)
      for _, r in ipairs(ALL) do
        assert.matches("info: " .. r .. ": +odown pod1 silenced by " .. id .. " (planned failover, by alice, until ",
          log, 1, true)
      end
      local rc2, log2 = ctx:run("eventilator", table.unpack(SWITCH1))
      assert.equal(0, rc2, log2)
      for _, r in ipairs({ "pagerduty", "alertmanager", "webhook" }) do
        assert.matches("info: " .. r .. ": +switch-master pod1 silenced by " .. id, log2, 1, true)
      end
      local rc3, log3 = ctx:run("reconfigurator", table.unpack(LEADER1))
      assert.equal(0, rc3, log3)
      assert.matches("info: alertmanager: client-reconfig pod1 silenced by " .. id, log3, 1, true)

      -- the receivers sent nothing; of the HTTP requests only Consul's PUTs are there
      -- (the example rule writes on +switch-master and on the leader's client-reconfig)
      assert.same({ "/v1/kv/redis/pod1", "/v1/kv/redis/pod1" }, sent())
      -- the reactions: HAProxy follows the master, Docker scaled, metrics and the stream recorded
      CFG.haproxy = { socket = hp.socket, timeout = 2 }
      local servers = assert(haproxy.servers("redis"))
      assert.equal(7002, servers[1].port)
      local updates = 0
      for l in (procs.read(docker_dir .. "/docker.jsonl") or ""):gmatch("[^\n]+") do
        local r = json.decode(l)
        assert.is_nil(r.problem)
        if r.path and r.path:find("/services/[^/]+/update") then updates = updates + 1 end
      end
      assert.equal(1, updates)
      assert.equal("1", cli("ZCARD", "failovers:pod1:log"))
      assert.not_equal("", cli("KEYS", "warnings:*odown*"))
      assert.equal("3", cli("XLEN", "eventilator:events")) -- +odown, +switch-master, client-reconfig

      -- another pod is not silenced: every receiver sends its +odown
      S.clear()
      rc, log = ctx:run("eventilator", table.unpack(ODOWN2))
      assert.equal(0, rc, log)
      assert.equal(0, count(log, "silenced by"))
      assert.same({ "/am/api/v2/alerts", "/hook", "/pagerduty/v2/enqueue", "/slack", "sensu" }, sent())
    end)
  end)

  it("--event: only the events the pattern matches are silenced; an expired silence silences nothing", function()
    config({ "slack", "pagerduty" })
    local id = add("--pod", "pod1", "--event", "+odown", "--for", "1h", "--comment", "c")
    local rc, log = ctx:run("eventilator", table.unpack(ODOWN1))
    assert.equal(0, rc, log)
    assert.same({}, sent())
    rc, log = ctx:run("eventilator", "-odown", "master pod1 127.0.0.1 7001")
    assert.equal(0, rc, log)
    assert.same({ "/pagerduty/v2/enqueue", "/slack" }, sent())
    assert.equal(0, (ctx:run("eventilator", "silence", "expire", id)))
    S.clear()
    rc, log = ctx:run("eventilator", table.unpack(ODOWN1))
    assert.equal(0, rc, log)
    assert.same({ "/pagerduty/v2/enqueue", "/slack" }, sent())
  end)

  it("rules can ask: silence.match(ev) is the silence ending last, or nil; in the start-up binary", function()
    config({})
    ctx:rule("90-ask.lua", [[
      on("*", function(ev)
        local s = silence.match(ev)
        log.info("asked %s %s: %s", ev.name, ev.pod,
          s and string.format("%s %s %s %s %d", s.id, s.event, s.author, s.comment, s.ends - s.starts) or "none")
        return true
      end)
    ]])
    local down = add("--pod", "pod1", "--event", "+*down", "--for", "1h", "--comment", "db upgrade", "--author", "al")
    local all = add("--pod", "pod1", "--for", "2h", "--comment", "longer", "--author", "bo")
    local rc, log = ctx:run("eventilator", table.unpack(ODOWN1))
    assert.equal(0, rc, log)
    assert.matches("asked +odown pod1: " .. all .. " * bo longer 7200", log, 1, true)
    assert.is_nil(log:find("runtime=full", 1, true)) -- silence.match needs no json or http: the start-up binary
    assert.equal(0, (ctx:run("eventilator", "silence", "expire", all)))
    log = select(2, ctx:run("eventilator", table.unpack(ODOWN1)))
    assert.matches("asked +odown pod1: " .. down .. " +*down al db upgrade 3600", log, 1, true)
    log = select(2, ctx:run("eventilator", "-odown", "master pod1 127.0.0.1 7001"))
    assert.matches("asked -odown pod1: none", log, 1, true)
    log = select(2, ctx:run("eventilator", table.unpack(ODOWN2)))
    assert.matches("asked +odown pod2: none", log, 1, true)
  end)

  it("a store that is down means not silenced: every receiver sends, and the log says so once", function()
    config({ "slack", "pagerduty", "webhook" }, nil, procs.closed_port())
    local rc, log = ctx:run("eventilator", table.unpack(ODOWN1))
    assert.equal(0, rc, log)
    assert.same({ "/hook", "/pagerduty/v2/enqueue", "/slack" }, sent())
    assert.equal(1, count(log, "warn: silences: store unreachable ("), log)
    assert.matches("connection refused): not silenced", log, 1, true)
  end)

  describe("the cost for a call that reaches no receiver", function()
    it("is nothing: no script on the store, no silence in the log", function()
      config({}, { "metrics = { enabled = true }", "warnings = { enabled = true }", "stream = { enabled = true }" })
      add("--pod", "pod1", "--for", "1h", "--comment", "c")
      cli("CONFIG", "RESETSTAT")
      local before = #ctx:logtext()
      for _, call in ipairs({ { "eventilator", ODOWN1 }, { "eventilator", SWITCH1 }, { "reconfigurator", LEADER1 } }) do
        local rc, log = ctx:run(call[1], table.unpack(call[2]))
        assert.equal(0, rc, log)
      end
      assert.equal("3", cli("XLEN", "eventilator:events")) -- the reactions did use the store
      assert.equal(0, evals())
      assert.is_nil(ctx:logtext():sub(before + 1):find("silence", 1, true))

      -- a receiver that is enabled but not for this event does not ask either
      config({}, { 'slack = { enabled = true, webhook_url = "http://127.0.0.1:1/", trigger_on = { "+promoted-slave" } }' })
      assert.equal(0, (ctx:run("eventilator", table.unpack(ODOWN1))))
      assert.equal(0, evals())
    end)

    it("with the store down, nothing is tried for silences: no line about them", function()
      config({}, { 'slack = { enabled = true, webhook_url = "http://127.0.0.1:1/", trigger_on = { "+promoted-slave" } }' },
        procs.closed_port())
      local rc, log = ctx:run("eventilator", table.unpack(ODOWN1))
      assert.equal(0, rc, log)
      assert.is_nil(log:find("silence", 1, true))
    end)

    it("is one round trip for a call, however many receivers send", function()
      config({ "slack", "pagerduty", "webhook", "sensu", "alertmanager" })
      add("--pod", "pod1", "--event", "-odown", "--for", "1h", "--comment", "c")
      cli("CONFIG", "RESETSTAT")
      local rc, log = ctx:run("eventilator", table.unpack(ODOWN1))
      assert.equal(0, rc, log)
      assert.equal(5, #sent())
      assert.equal(1, evals())
    end)
  end)
end)
