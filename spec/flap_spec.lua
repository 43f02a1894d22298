-- eventilator.flap against a private redis-server: counting +sdown per
-- instance in a window, crossing the threshold once per cooldown, atomic
-- under concurrent callers (real processes), keys that expire; and limit().
local procs = require("procs")
local runner = require("runner")

local CFG = require("hostless") -- the config the modules see

local flap = require("eventilator.flap")

local function sdown(port, t)
  return {
    name = "+sdown", mode = "eventilator", pod = "pod1", time = t,
    text = "slave 127.0.0.1:" .. port .. " 127.0.0.1 " .. port .. " @ pod1 127.0.0.1 6379",
    instance = { type = "slave", name = "127.0.0.1:" .. port, ip = "127.0.0.1", port = port },
    master = { name = "pod1", ip = "127.0.0.1", port = 6379 },
  }
end

describe("eventilator.flap", function()
  local store

  setup(function()
    store = procs.start_redis()
  end)

  teardown(function()
    if store then store.stop() end
  end)

  before_each(function()
    procs.cli(store.port, "flushall")
    CFG.redis = { host = "127.0.0.1", port = store.port, timeout = 2 }
    CFG.flap = { window = 600, threshold = 3, cooldown = 3600, prefix = "eventilator:flap" }
  end)

  it("crosses once at the threshold and not again within the cooldown", function()
    local t = 1772352000
    local got = {}
    for i = 1, 4 do
      local count, crossed = flap.track(sdown(7001, t + 60 * i))
      got[i] = { count, crossed }
    end
    assert.same({ { 1, false }, { 2, false }, { 3, true }, { 4, false } }, got)
    -- another instance has its own count
    assert.same({ 1, false }, { flap.track(sdown(7002, t + 300)) })
  end)

  it("counts only the window, and trims what fell out of it", function()
    local t = 1772352000
    flap.track(sdown(7001, t))
    flap.track(sdown(7001, t + 10))
    local count, crossed = flap.track(sdown(7001, t + 700)) -- the first two are older than 600 s
    assert.equal(1, count)
    assert.is_false(crossed)
    assert.equal("1", procs.cli(store.port, "zcard", "eventilator:flap:pod1:127.0.0.1:7001:downs"))
  end)

  it("crosses again once the cooldown has passed", function()
    local opts = { window = 600, threshold = 2, cooldown = 3 }
    local t = os.time()
    assert.is_false(select(2, flap.track(sdown(7003, t), opts)))
    assert.is_true(select(2, flap.track(sdown(7003, t + 1), opts)))
    assert.is_false(select(2, flap.track(sdown(7003, t + 2), opts)))
    procs.wait(function() return procs.cli(store.port, "exists", "eventilator:flap:pod1:127.0.0.1:7003:reported") == "0" end,
      10, "cooldown key to expire")
    assert.is_true(select(2, flap.track(sdown(7003, t + 3), opts)))
  end)

  it("lets every key expire", function()
    local count, crossed = flap.track(sdown(7004, os.time()), { window = 60, threshold = 1, cooldown = 120 })
    assert.equal(1, count)
    assert.is_true(crossed)
    for k, max in pairs({ downs = 60, reported = 120 }) do
      local ttl = tonumber(procs.cli(store.port, "ttl", "eventilator:flap:pod1:127.0.0.1:7004:" .. k))
      assert.is_true(ttl > 0 and ttl <= max, k .. " ttl " .. tostring(ttl))
    end
    procs.cli(store.port, "flushall")
    flap.track(sdown(7004, os.time()), { window = 1, threshold = 1, cooldown = 1 })
    local keys = procs.cli(store.port, "keys", "eventilator:flap:*")
    assert.matches("downs", keys)
    assert.matches("reported", keys)
    procs.wait(function() return procs.cli(store.port, "keys", "eventilator:flap:*") == "" end, 5, "keys to expire")
  end)

  it("keeps at most MAX_ENTRIES per instance", function()
    local saved = flap.MAX_ENTRIES
    flap.MAX_ENTRIES = 5
    local t = os.time()
    local count
    for i = 1, 8 do count = flap.track(sdown(7005, t + i / 100)) end
    flap.MAX_ENTRIES = saved
    assert.equal(5, count)
    assert.equal("5", procs.cli(store.port, "zcard", "eventilator:flap:pod1:127.0.0.1:7005:downs"))
  end)

  it("counts 16 concurrent calls (16 processes) exactly once each, one of them crossing", function()
    local ctx = runner.new()
    finally(function() ctx:cleanup() end)
    ctx:config(string.format("redis = { port = %d }\nflap = { threshold = 16 }\n", store.port))
    ctx:rule("flap.lua", [[
on("+sdown", function(ev)
  local count, crossed = require("eventilator.flap").track(ev)
  if not count then return nil, crossed end
  log.info("flap count=%d crossed=%s", count, tostring(crossed))
  return true
end)
]])
    local ev = sdown(7006, 0)
    local bin = procs.build .. "/bin/eventilator"
    local cmd = {}
    for _ = 1, 16 do
      cmd[#cmd + 1] = string.format("env EVENTILATOR_CONF=%s %s +sdown %s &", procs.quote(ctx.conf), procs.quote(bin),
        procs.quote(ev.text))
    end
    local _, rc = procs.sh("{ " .. table.concat(cmd, " ") .. " wait; }")
    assert.equal(0, rc)
    local counts, crossings = {}, 0
    for c, x in ctx:logtext():gmatch("flap count=(%d+) crossed=(%a+)") do
      counts[#counts + 1] = tonumber(c)
      if x == "true" then crossings = crossings + 1 end
    end
    table.sort(counts)
    local want = {}
    for i = 1, 16 do want[i] = i end
    assert.same(want, counts)
    assert.equal(1, crossings)
    assert.equal("16", procs.cli(store.port, "zcard", "eventilator:flap:pod1:127.0.0.1:7006:downs"))
  end)

  it("fails with nil, err when the store is down", function()
    CFG.redis.port = procs.closed_port()
    local count, err = flap.track(sdown(7001, os.time()))
    assert.is_nil(count)
    assert.matches("^flap: ", err)
  end)

  describe("limit", function()
    it("allows max per period, then refuses until the period is over", function()
      assert.is_true(flap.limit("replace:pod1", 2, 1))
      assert.is_true(flap.limit("replace:pod1", 2, 1))
      assert.is_false(flap.limit("replace:pod1", 2, 1))
      assert.is_true(flap.limit("replace:pod2", 2, 1)) -- its own counter
      procs.wait(function() return procs.cli(store.port, "exists", "eventilator:flap:limit:replace:pod1") == "0" end,
        5, "the period to end")
      assert.is_true(flap.limit("replace:pod1", 2, 1))
      assert.is_false(flap.limit("x", 0, 60))
    end)
  end)
end)
