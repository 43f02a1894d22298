-- eventilator.metrics against a private redis-server: every key, type,
-- member, counter and TTL of docs/metrics.md (../shared/metrics-schema.md).
local procs = require("procs")

local CFG = require("hostless") -- the config the modules see

local metrics = require("eventilator.metrics")

-- 2026-03-01 09:05:07 local time: every window part is a single digit, so
-- the keys show that nothing is zero-padded.
local TS = os.time({ year = 2026, month = 3, day = 1, hour = 9, min = 5, sec = 7 })
local WINDOWS = { "2026", "2026:3", "2026:3:1", "2026:3:1:9", "2026:3:1:9:5" }

local function lines(s)
  local out = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do
    if l ~= "" then out[#out + 1] = l end
  end
  return out
end

local function zrange(port, key)
  return lines(procs.cli(port, "ZRANGE", key, "0", "-1", "WITHSCORES"))
end

local function sorted(t)
  table.sort(t)
  return t
end

local function failover_ev(ts)
  return {
    name = "client-reconfig", mode = "reconfigurator", pod = "pod1", role = "leader", state = "start",
    args = { "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380" },
    old_master = { ip = "10.0.0.1", port = 6379 }, new_master = { ip = "10.0.0.2", port = 6380 },
    host = "sentinel1.example.com", time = (ts or TS) + 0.75,
  }
end

describe("eventilator.metrics", function()
  local redis
  local function cli(...) return procs.cli(redis.port, ...) end

  setup(function()
    redis = procs.start_redis()
  end)

  teardown(function()
    if redis then redis.stop() end
  end)

  before_each(function()
    cli("FLUSHALL")
    cli("CONFIG", "RESETSTAT")
    CFG.redis = { host = "127.0.0.1", port = redis.port, db = 0, timeout = 1 }
  end)

  it("windows are local time, not zero-padded", function()
    assert.same(WINDOWS, metrics.windows(TS))
    local t = os.time({ year = 2031, month = 12, day = 31, hour = 23, min = 59, sec = 0 })
    assert.same({ "2031", "2031:12", "2031:12:31", "2031:12:31:23", "2031:12:31:23:59" }, metrics.windows(t))
  end)

  describe("record_failover", function()
    it("writes every key of the failover layout in one MULTI/EXEC", function()
      assert.is_true(metrics.record_failover(failover_ev()))
      local ts = tostring(TS)

      local want = { "pods-with-failovers", "failovers:pod1:timestamps", "failovers:pod1:log",
        "failovers:aggregated", "failovers:success:pod1:counters", "pods-with-failovers:2026:3:1" }
      for _, w in ipairs(WINDOWS) do
        want[#want + 1] = "failovers:" .. w
        want[#want + 1] = "failovers:aggregated-by-time:" .. w
      end
      assert.same(sorted(want), sorted(lines(cli("KEYS", "*"))))

      assert.equal("set", cli("TYPE", "pods-with-failovers"))
      assert.equal("pod1", cli("SMEMBERS", "pods-with-failovers"))
      assert.equal("set", cli("TYPE", "failovers:pod1:timestamps"))
      assert.equal(ts, cli("SMEMBERS", "failovers:pod1:timestamps"))
      assert.equal("zset", cli("TYPE", "failovers:pod1:log"))
      assert.same({ "10.0.0.2:6380@" .. ts, ts }, zrange(redis.port, "failovers:pod1:log"))
      assert.equal("hash", cli("TYPE", "failovers:aggregated"))
      assert.equal("hash", cli("TYPE", "failovers:success:pod1:counters"))
      for _, w in ipairs(WINDOWS) do
        assert.equal("1", cli("HGET", "failovers:aggregated", w))
        assert.equal("1", cli("HGET", "failovers:success:pod1:counters", w))
        assert.equal("set", cli("TYPE", "failovers:" .. w))
        assert.equal("pod1", cli("SMEMBERS", "failovers:" .. w))
        assert.equal("zset", cli("TYPE", "failovers:aggregated-by-time:" .. w))
        assert.same({ "pod1", ts }, zrange(redis.port, "failovers:aggregated-by-time:" .. w))
      end
      assert.equal("5", cli("HLEN", "failovers:aggregated"))
      assert.equal("set", cli("TYPE", "pods-with-failovers:2026:3:1"))
      assert.equal("pod1", cli("SMEMBERS", "pods-with-failovers:2026:3:1"))
      local ttl = tonumber(cli("TTL", "pods-with-failovers:2026:3:1"))
      assert.is_true(ttl > 5184000 - 60 and ttl <= 5184000, "ttl " .. tostring(ttl))
      -- only the day set expires
      assert.equal("-1", cli("TTL", "failovers:2026:3:1"))
      assert.equal("-1", cli("TTL", "pods-with-failovers"))

      -- one connection, one MULTI, one EXEC
      local stats = cli("INFO", "commandstats")
      assert.matches("cmdstat_multi:calls=1,", stats)
      assert.matches("cmdstat_exec:calls=1,", stats)
    end)

    it("keeps two log entries for two failovers to the same replica", function()
      assert.is_true(metrics.record_failover(failover_ev(TS)))
      assert.is_true(metrics.record_failover(failover_ev(TS + 60)))
      assert.same({ "10.0.0.2:6380@" .. TS, "10.0.0.2:6380@" .. (TS + 60) },
        lines(cli("ZRANGE", "failovers:pod1:log", "0", "-1")))
      assert.equal("2", cli("SCARD", "failovers:pod1:timestamps"))
      assert.equal("2", cli("HGET", "failovers:aggregated", "2026:3:1"))
      assert.equal("2", cli("HGET", "failovers:success:pod1:counters", "2026:3:1:9"))
      assert.equal("1", cli("HGET", "failovers:success:pod1:counters", "2026:3:1:9:5"))
      assert.equal("1", cli("HGET", "failovers:success:pod1:counters", "2026:3:1:9:6"))
      assert.equal(tostring(TS + 60), cli("ZSCORE", "failovers:aggregated-by-time:2026", "pod1"))
    end)

    it("needs a pod and a new master", function()
      local ev = failover_ev()
      ev.pod = nil
      local ok, err = metrics.record_failover(ev)
      assert.is_nil(ok)
      assert.matches("no pod", err)
      ev = failover_ev()
      ev.new_master = nil
      ok, err = metrics.record_failover(ev)
      assert.is_nil(ok)
      assert.matches("no new master", err)
      assert.equal("", cli("KEYS", "*"))
    end)
  end)

  describe("record_failure", function()
    it("writes every key of the failed-failover layout", function()
      local ev = { name = "-failover-abort-no-good-slave", mode = "eventilator", pod = "pod1",
        instance = { type = "master", name = "pod1", ip = "10.0.0.1", port = 6379 },
        master = { name = "pod1", ip = "10.0.0.1", port = 6379 }, time = TS + 0.1 }
      assert.is_true(metrics.record_failure(ev))
      local ts = tostring(TS)
      local want = { "pods-with-failed-failovers", "failovers:failures:pod1:timestamps",
        "failovers:pod1:faillog",
        "failovers:failures:aggregated", "failovers:failures:pod1:counters" }
      for _, w in ipairs(WINDOWS) do want[#want + 1] = "failovers:failures:" .. w end
      assert.same(sorted(want), sorted(lines(cli("KEYS", "*"))))

      assert.equal("set", cli("TYPE", "pods-with-failed-failovers"))
      assert.equal("pod1", cli("SMEMBERS", "pods-with-failed-failovers"))
      assert.equal("set", cli("TYPE", "failovers:failures:pod1:timestamps"))
      assert.equal(ts, cli("SMEMBERS", "failovers:failures:pod1:timestamps"))
      assert.equal("zset", cli("TYPE", "failovers:pod1:faillog"))
      assert.same({ "-failover-abort-no-good-slave@" .. ts, ts },
        lines(cli("ZRANGE", "failovers:pod1:faillog", "0", "-1", "WITHSCORES")))
      for _, w in ipairs(WINDOWS) do
        assert.equal("1", cli("HGET", "failovers:failures:aggregated", w))
        assert.equal("1", cli("HGET", "failovers:failures:pod1:counters", w))
        assert.equal("set", cli("TYPE", "failovers:failures:" .. w))
        assert.equal("pod1", cli("SMEMBERS", "failovers:failures:" .. w))
      end
      assert.equal("hash", cli("TYPE", "failovers:failures:aggregated"))
      assert.equal("hash", cli("TYPE", "failovers:failures:pod1:counters"))
      for _, k in ipairs(want) do assert.equal("-1", cli("TTL", k)) end

      ev.name = "-failover-abort-slave-timeout"
      ev.time = TS + 30
      assert.is_true(metrics.record_failure(ev))
      assert.same({ "-failover-abort-no-good-slave@" .. ts, "-failover-abort-slave-timeout@" .. (TS + 30) },
        lines(cli("ZRANGE", "failovers:pod1:faillog", "0", "-1")))
      assert.equal("2", cli("HGET", "failovers:failures:pod1:counters", "2026:3:1:9:5"))
    end)
  end)

  describe("record_warning", function()
    it("writes every key of the warning layout", function()
      local ev = { name = "+sdown", mode = "eventilator", pod = "pod1",
        instance = { type = "slave", name = "10.0.0.2:6380", ip = "10.0.0.2", port = 6380 },
        master = { name = "pod1", ip = "10.0.0.1", port = 6379 }, time = TS }
      assert.is_true(metrics.record_warning(ev))
      local ts = tostring(TS)
      local want = { "pods-with-warnings", "sentinel:warnings:+sdown:pod1:timestamps",
        "warnings:+sdown:faillog",
        "sentinel:warnings:aggregated", "sentinel:warnings:+sdown:aggregated",
        "sentinel:warnings:+sdown:pod1:counters", "pods-with-warnings:2026:3:1" }
      for _, w in ipairs(WINDOWS) do
        want[#want + 1] = "sentinel:warnings:" .. w
        want[#want + 1] = "sentinel:warnings-by-time:" .. w
      end
      assert.same(sorted(want), sorted(lines(cli("KEYS", "*"))))

      assert.equal("set", cli("TYPE", "pods-with-warnings"))
      assert.equal("pod1", cli("SMEMBERS", "pods-with-warnings"))
      assert.equal("set", cli("TYPE", "sentinel:warnings:+sdown:pod1:timestamps"))
      assert.equal(ts, cli("SMEMBERS", "sentinel:warnings:+sdown:pod1:timestamps"))
      assert.equal("zset", cli("TYPE", "warnings:+sdown:faillog"))
      assert.same({ "pod1", ts }, lines(cli("ZRANGE", "warnings:+sdown:faillog", "0", "-1", "WITHSCORES")))
      for _, k in ipairs({ "sentinel:warnings:aggregated", "sentinel:warnings:+sdown:aggregated",
        "sentinel:warnings:+sdown:pod1:counters" }) do
        assert.equal("hash", cli("TYPE", k))
        assert.equal("5", cli("HLEN", k))
        for _, w in ipairs(WINDOWS) do assert.equal("1", cli("HGET", k, w)) end
      end
      for _, w in ipairs(WINDOWS) do
        assert.equal("set", cli("TYPE", "sentinel:warnings:" .. w))
        assert.equal("pod1", cli("SMEMBERS", "sentinel:warnings:" .. w))
        assert.equal("zset", cli("TYPE", "sentinel:warnings-by-time:" .. w))
        assert.same({ "pod1", ts }, zrange(redis.port, "sentinel:warnings-by-time:" .. w))
      end
      assert.equal("pod1", cli("SMEMBERS", "pods-with-warnings:2026:3:1"))
      local ttl = tonumber(cli("TTL", "pods-with-warnings:2026:3:1"))
      assert.is_true(ttl > 5184000 - 60 and ttl <= 5184000, "ttl " .. tostring(ttl))
      assert.equal("-1", cli("TTL", "sentinel:warnings:2026:3:1"))
    end)

    it("keeps each event, with its sign, apart", function()
      local ev = { name = "+odown", pod = "pod2", time = TS, votes = 2, quorum = 2,
        instance = { type = "master", name = "pod2", ip = "10.0.0.9", port = 6379 } }
      assert.is_true(metrics.record_warning(ev))
      ev.name = "-odown"
      assert.is_true(metrics.record_warning(ev))
      assert.equal("1", cli("HGET", "sentinel:warnings:+odown:aggregated", "2026"))
      assert.equal("1", cli("HGET", "sentinel:warnings:-odown:pod2:counters", "2026"))
      assert.equal("2", cli("HGET", "sentinel:warnings:aggregated", "2026"))
      assert.equal("pod2", cli("ZRANGE", "warnings:-odown:faillog", "0", "-1"))
    end)
  end)

  describe("Redis trouble fails the handler", function()
    it("returns nil, err when Redis is down", function()
      CFG.redis = { host = "127.0.0.1", port = procs.closed_port(), timeout = 1 }
      local ok, err = metrics.record_failover(failover_ev())
      assert.is_nil(ok)
      assert.is_string(err)
      assert.matches("^metrics: ", err)
      ok, err = metrics.record_warning({ name = "+sdown", pod = "p", time = TS })
      assert.is_nil(ok)
      assert.is_string(err)
    end)

    it("returns nil, err when a command fails inside EXEC", function()
      cli("SET", "pods-with-failovers", "not a set")
      local ok, err = metrics.record_failover(failover_ev())
      assert.is_nil(ok)
      assert.matches("WRONGTYPE", err)
    end)

    it("returns nil, err when the transaction is aborted (OOM while queueing)", function()
      cli("CONFIG", "SET", "maxmemory", "1")
      finally(function() cli("CONFIG", "SET", "maxmemory", "0") end)
      local ok, err = metrics.record_failure({ name = "-failover-abort-slave-timeout", pod = "p", time = TS })
      assert.is_nil(ok)
      assert.matches("OOM", err)
      cli("CONFIG", "SET", "maxmemory", "0")
      assert.equal("", cli("KEYS", "*"))
    end)

    it("authenticates with config.redis.password, and fails on a wrong one", function()
      local r = procs.start_redis({ "requirepass s3cret" })
      finally(function() r.stop() end)
      CFG.redis = { host = "127.0.0.1", port = r.port, password = "s3cret", timeout = 1 }
      assert.is_true(metrics.record_warning({ name = "-sdown", pod = "p", time = TS }))
      assert.equal("p", procs.cli(r.port, "-a", "s3cret", "--no-auth-warning",
        "SMEMBERS", "pods-with-warnings"))
      CFG.redis.password = "wrong"
      local ok, err = metrics.record_warning({ name = "-sdown", pod = "p", time = TS })
      assert.is_nil(ok)
      assert.matches("WRONGPASS", err)
      CFG.redis.password = ""
      ok, err = metrics.record_warning({ name = "-sdown", pod = "p", time = TS })
      assert.is_nil(ok)
      assert.matches("NOAUTH", err)
    end)

    it("uses config.redis.db", function()
      CFG.redis.db = 3
      assert.is_true(metrics.record_warning({ name = "+sdown", pod = "p", time = TS }))
      assert.equal("", cli("KEYS", "*"))
      assert.equal("p", cli("-n", "3", "SMEMBERS", "pods-with-warnings"))
    end)
  end)
end)

describe("default rules for metrics", function()
  local load_rule = require("rulefile")

  it("stay on the fast binary: no word that hands a call over", function()
    for _, f in ipairs({ "00-log.lua", "10-failover-metrics.lua", "20-warnings.lua" }) do
      local text = procs.read(procs.src .. "/rules/" .. f):lower()
      for _, word in ipairs({ "http", "json", "slack", "sensu" }) do
        assert.is_nil(text:find(word, 1, true), f .. " contains " .. word)
      end
      assert.is_nil(("\n" .. text):find("\nlocal [%w_]+%s*=%s*require"), f .. " requires at top level")
    end
  end)

  it("register nothing when disabled", function()
    assert.same({}, (load_rule("10-failover-metrics.lua", { metrics = { enabled = false } })))
    assert.same({}, (load_rule("20-warnings.lua", { warnings = { enabled = false } })))
  end)

  it("register the failover, failure and warning events when enabled", function()
    local r = load_rule("10-failover-metrics.lua", { metrics = { enabled = true } })
    assert.equal(1, #r)
    assert.equal("client-reconfig", r[1].pattern)
    -- an observer's call records nothing
    assert.is_true(r[1].handler({ name = "client-reconfig", role = "observer", pod = "p" }))
    r = load_rule("20-warnings.lua", { warnings = { enabled = true } })
    assert.same({ "-failover-abort-no-good-slave", "-failover-abort-slave-timeout" }, r[1].pattern)
    assert.same({ "+sdown", "-sdown", "+odown", "-odown" }, r[2].pattern)
  end)
end)
