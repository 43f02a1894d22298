-- The shipped behaviour through the installed binary, as an operator gets
-- it from `cmake --install`: default rules, failover and warning metrics in
-- a real redis-server, Slack and Sensu stand-ins, a store that refuses,
-- hangs or wants another password, and the Go eventilator's TOML config
-- driving the same behaviour as its Lua twin.
local procs = require("procs")
local json = require("cjson")

local root, bin, rules
local store
local pids = {}

local function install()
  root = procs.tmpdir()
  local out, rc = procs.sh(string.format("DESTDIR=%s cmake --install %s --prefix /usr/lib/eventilator 2>&1",
    procs.quote(root), procs.quote(procs.build)))
  assert(rc == 0, out)
  bin = root .. "/usr/lib/eventilator/bin/"
  -- the default rules, as installed under the prefix (the system rules
  -- folder is written only with -DEVENTILATOR_INSTALL_SYSTEM_CONFIG=ON)
  rules = root .. "/usr/lib/eventilator/share/eventilator/rules"
  local _, src = procs.sh("test -f " .. procs.quote(rules .. "/00-log.lua"))
  if src ~= 0 then rules = "" end
  assert(rules ~= "", "default rules not installed")
end

-- Run an installed name with a Lua config text; returns rc, log text.
local function call(conf_text, name, ...)
  local dir = procs.tmpdir()
  local conf, logf = dir .. "/c.conf", dir .. "/e.log"
  procs.write(conf, string.format("log = { target = %q }\nrules_dir = %q\nstate_dir = %q\n%s\n",
    logf, rules, dir .. "/state", conf_text))
  local args = {}
  for i = 1, select("#", ...) do args[i] = procs.quote((select(i, ...))) end
  local _, rc = procs.sh(string.format("EVENTILATOR_CONF=%s %s %s", procs.quote(conf),
    procs.quote(bin .. name), table.concat(args, " ")))
  local log = procs.read(logf) or ""
  procs.rmtree(dir)
  return rc, log
end

local function redis_conf(port) return string.format("redis = { port = %d, timeout = 1 }", port) end
local function cli(...) return procs.cli(store.port, ...) end

-- Start spec/support/<script> with `args`, which give it port 0 (the kernel
-- picks one) and --ready `ready`; returns the port it listens on.
local function start_standin(script, args, ready)
  local pid = procs.spawn(string.format("python3 %s %s", procs.quote(procs.src .. "/spec/support/" .. script),
    args), ready .. ".out")
  pids[#pids + 1] = pid
  return procs.ready_port(pid, ready, script, ready .. ".out")
end

-- Stop the stand-ins, and return once they are gone (before their folder goes).
local function stop_standins()
  for _, p in ipairs(pids) do procs.halt(p) end
  pids = {}
end

describe("installed eventilator", function()
  setup(function()
    install()
    store = procs.start_redis()
  end)
  teardown(function()
    stop_standins()
    store.stop()
    procs.rmtree(root)
  end)
  before_each(function() cli("FLUSHALL") end)

  it("installs the binary, its two names and the default rules", function()
    for _, n in ipairs({ "eventilator", "reconfigurator", "registrator" }) do
      local _, rc = procs.sh("test -x " .. procs.quote(bin .. n))
      assert.are.equal(0, rc, n)
    end
    local files = procs.sh("ls " .. procs.quote(rules))
    assert.matches("00%-log%.lua", files)
    assert.matches("10%-failover%-metrics%.lua", files)
    local out, rc = procs.sh(procs.quote(bin .. "eventilator") .. " --version")
    assert.are.equal(0, rc)
    assert.matches("^eventilator ", out)
  end)

  it("puts nothing outside the prefix unless asked", function()
    local out = procs.sh("cd " .. procs.quote(root) .. " && find . -mindepth 1 -not -path './usr/lib/eventilator*' "
      .. "-not -path ./usr -not -path ./usr/lib")
    assert.are.equal("", out)
  end)

  it("records a leader's failover with every key of the schema, and nothing for an observer", function()
    local rc, log = call(redis_conf(store.port), "reconfigurator", "pod1", "leader", "start",
      "10.0.0.1", "6379", "10.0.0.2", "6380")
    assert.are.equal(0, rc, log)
    assert.matches("client%-reconfig pod=pod1 handlers=2 failed=0", log)
    local ts = tonumber(cli("SRANDMEMBER", "failovers:pod1:timestamps"))
    assert.is_number(ts)
    local t = os.date("*t", ts)
    local ws = { tostring(t.year), t.year .. ":" .. t.month, t.year .. ":" .. t.month .. ":" .. t.day }
    ws[4] = ws[3] .. ":" .. t.hour
    ws[5] = ws[4] .. ":" .. t.min
    assert.are.equal("pod1", cli("SMEMBERS", "pods-with-failovers"))
    assert.are.equal("10.0.0.2:6380@" .. ts, cli("ZRANGE", "failovers:pod1:log", "0", "-1"))
    for _, w in ipairs(ws) do
      assert.are.equal("1", cli("HGET", "failovers:aggregated", w), w)
      assert.are.equal("1", cli("HGET", "failovers:success:pod1:counters", w), w)
      assert.are.equal("pod1", cli("SMEMBERS", "failovers:" .. w), w)
      assert.are.equal(tostring(ts), cli("ZSCORE", "failovers:aggregated-by-time:" .. w, "pod1"), w)
    end
    assert.are.equal("set", cli("TYPE", "pods-with-failovers:" .. ws[3]))
    local ttl = tonumber(cli("TTL", "pods-with-failovers:" .. ws[3]))
    assert.is_true(ttl > 5184000 - 60 and ttl <= 5184000)
    assert.are.equal("zset", cli("TYPE", "failovers:pod1:log"))
    assert.are.equal("hash", cli("TYPE", "failovers:aggregated"))

    cli("FLUSHALL")
    rc = call(redis_conf(store.port), "reconfigurator", "pod1", "observer", "start", "10.0.0.1", "6379",
      "10.0.0.2", "6380")
    assert.are.equal(0, rc)
    assert.are.equal("", cli("KEYS", "*"))
  end)

  it("keeps two log entries for two failovers to the same replica", function()
    call(redis_conf(store.port), "reconfigurator", "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380")
    -- the second in the next second: a log entry is "<new master>@<time>"
    local ts = assert(tonumber(cli("ZRANGE", "failovers:pod1:log", "0", "-1"):match("@(%d+)$")))
    procs.wait(function() return os.time() > ts end, 5, "the next second")
    call(redis_conf(store.port), "reconfigurator", "pod1", "leader", "start", "10.0.0.3", "6379", "10.0.0.2", "6380")
    assert.are.equal("2", cli("ZCARD", "failovers:pod1:log"))
  end)

  it("records warnings and failed failovers when warnings are enabled", function()
    local conf = redis_conf(store.port) .. "\nwarnings = { enabled = true }"
    for _, e in ipairs({ "+sdown", "-sdown", "-odown" }) do
      assert.are.equal(0, (call(conf, "eventilator", e, "master pod1 127.0.0.1 6379")))
    end
    assert.are.equal(0, (call(conf, "eventilator", "+odown", "master pod1 127.0.0.1 6379 #quorum 2/3")))
    assert.are.equal(0, (call(conf, "eventilator", "-failover-abort-no-good-slave", "master pod1 127.0.0.1 6379")))
    assert.are.equal("pod1", cli("SMEMBERS", "pods-with-warnings"))
    assert.are.equal("4", cli("HGET", "sentinel:warnings:aggregated", os.date("%Y")))
    assert.are.equal("1", cli("HGET", "sentinel:warnings:+odown:pod1:counters", os.date("%Y")))
    assert.are.equal("pod1", cli("SMEMBERS", "pods-with-failed-failovers"))
    -- not enabled: nothing
    cli("FLUSHALL")
    call(redis_conf(store.port), "eventilator", "+sdown", "master pod1 127.0.0.1 6379")
    assert.are.equal("", cli("KEYS", "*"))
  end)

  it("fails with exit 1 and one clear line when the store refuses, hangs or wants another password", function()
    local dir = procs.tmpdir()
    local silent = start_standin("tcpd.py", string.format("--mode silent --port 0 --log %s/s.log --ready %s/r",
      dir, dir), dir .. "/r")
    local pw = procs.start_redis({ "requirepass right" })
    local cases = {
      { redis_conf(procs.closed_port()), "connection refused" },
      { redis_conf(silent), "timed out" },
      { string.format("redis = { port = %d, password = 'wrong', timeout = 1 }", pw.port), "WRONGPASS" },
    }
    for _, c in ipairs(cases) do
      local t0 = procs.now()
      local rc, log = call(c[1], "reconfigurator", "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380")
      assert.are.equal(1, rc, log)
      assert.matches("rule [^\n]*10%-failover%-metrics%.lua:%d+ failed: [^\n]*" .. c[2], log)
      assert.is_true(procs.now() - t0 < 5)
    end
    pw.stop()
    stop_standins()
    procs.rmtree(dir)
  end)

  it("drives Slack and Sensu from the Go eventilator's TOML as from its Lua twin", function()
    local dir = procs.tmpdir()
    local hport = start_standin("httpd.py", string.format("0 --log %s/h.log --ready %s/hr", dir, dir), dir .. "/hr")
    local sport = start_standin("tcpd.py", string.format("--mode sensu --port 0 --log %s/s.log --ready %s/sr", dir, dir),
      dir .. "/sr")
    -- the shipped Go sample, with the stand-ins' addresses and Slack enabled
    local toml = procs.read(procs.shared .. "/legacy/eventilator.conf")
    toml = toml:gsub("Port = 3030", "Port = " .. sport):gsub("(%[Slack%][^%[]-Enabled = )false", "%1true")
    local slack_triggers = { "+sdown", "-sdown", "+odown", "-odown", "promoted-slave",
      "-failover-abort-no-good-slave" }
    local sensu_triggers = { "+odown", "-odown", "-failover-abort-no-good-slave" }
    -- the Lua twin: the same settings; only the Slack API address differs, so
    -- the stand-in can answer (a TOML config always talks to slack.com)
    local lua_twin = string.format([[
      redis = { host = "127.0.0.1", port = 6379 }
      warnings = { enabled = false }
      slack = { enabled = true, token = "use-your-token-holmes", channel = "sentinel-events",
                username = "eventilator", api_url = "http://127.0.0.1:%d/api", timeout = 2,
                trigger_on = { %q, %q, %q, %q, %q, %q } }
      sensu = { enabled = true, host = "127.0.0.1", port = %d, trigger_on = { %q, %q, %q } }
    ]], hport, slack_triggers[1], slack_triggers[2], slack_triggers[3], slack_triggers[4], slack_triggers[5],
      slack_triggers[6], sport, sensu_triggers[1], sensu_triggers[2], sensu_triggers[3])
    local parsed = assert(require("eventilator.legacy").parse(toml, "eventilator.conf"))
    assert.are.same({ host = "127.0.0.1", port = 6379 }, parsed.redis)
    assert.is_false(parsed.warnings.enabled)
    assert.is_true(parsed.slack.enabled)
    assert.are.equal("use-your-token-holmes", parsed.slack.token)
    assert.are.equal("sentinel-events", parsed.slack.channel)
    assert.are.equal("eventilator", parsed.slack.username)
    assert.are.same(slack_triggers, parsed.slack.trigger_on)
    assert.is_true(parsed.sensu.enabled)
    assert.are.equal("127.0.0.1", parsed.sensu.host)
    assert.are.equal(sport, parsed.sensu.port)
    assert.are.same(sensu_triggers, parsed.sensu.trigger_on)
    -- the TOML file itself loads through the installed binary, and check says which format
    local tdir = procs.tmpdir()
    procs.write(tdir .. "/eventilator.conf", toml)
    local out, crc = procs.sh(string.format("EVENTILATOR_CONF=%s EVENTILATOR_RULES=%s %s check 2>&1",
      procs.quote(tdir .. "/eventilator.conf"), procs.quote(rules), procs.quote(bin .. "eventilator")))
    assert.are.equal(0, crc, out)
    assert.matches("%(legacy TOML%)", out)
    -- and the Lua twin drives Slack (chat.postMessage) and Sensu
    local rc, log = call(lua_twin, "eventilator", "+odown", "master pod1 127.0.0.1 6379 #quorum 2/3")
    assert.are.equal(0, rc, log)
    assert.matches("runtime=full", log)
    local req = json.decode((procs.read(dir .. "/h.log") or ""):match("[^\n]+"))
    assert.are.equal("/api/chat.postMessage", req.path)
    assert.are.equal("Bearer use-your-token-holmes", req.headers.authorization)
    local check = json.decode((procs.read(dir .. "/s.log") or ""):match("[^\n]+")).json
    assert.are.equal("redis-master-down", check.name)
    assert.are.equal(1, check.status)
    assert.are.equal("pod-pod1", check.source)
    stop_standins()
    procs.rmtree(tdir)
    procs.rmtree(dir)
  end)
end)
