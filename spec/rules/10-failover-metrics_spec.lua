-- The shipped rule 10-failover-metrics.lua: the leader's client-reconfig
-- records the failover in one MULTI/EXEC; observers record nothing.
local testing = require("eventilator.testing")

local T = 1795600000 -- the call's time: the metrics keys are named by it
local NEW = { "10.0.0.2", "6379" }

local function reconfig(t, role)
  return t:call{ argv0 = "reconfigurator", time = T + 0.5,
                 args = { "pod1", role, "start", "10.0.0.1", "6379", NEW[1], NEW[2] } }
end

describe("10-failover-metrics.lua", function()
  local t
  before_each(function()
    t = testing.load{ config = { metrics = { enabled = true } },
                      rules = testing.shipped_rules("10-failover-metrics.lua") }
  end)
  after_each(function() t:close() end)

  it("records the leader's failover in one transaction", function()
    local r = reconfig(t, "leader")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(0, r.exit)
    local d = os.date("*t", T) -- windows in local time, no zero padding
    local y = tostring(d.year)
    local wins = { y, y .. ":" .. d.month, y .. ":" .. d.month .. ":" .. d.day,
                   y .. ":" .. d.month .. ":" .. d.day .. ":" .. d.hour,
                   y .. ":" .. d.month .. ":" .. d.day .. ":" .. d.hour .. ":" .. d.min }
    local want = {
      { "MULTI" },
      { "SADD", "pods-with-failovers", "pod1" },
      { "SADD", "failovers:pod1:timestamps", tostring(T) },
      { "ZADD", "failovers:pod1:log", tostring(T), "10.0.0.2:6379@" .. T },
    }
    for _, w in ipairs(wins) do
      want[#want + 1] = { "HINCRBY", "failovers:aggregated", w, "1" }
      want[#want + 1] = { "HINCRBY", "failovers:success:pod1:counters", w, "1" }
      want[#want + 1] = { "SADD", "failovers:" .. w, "pod1" }
      want[#want + 1] = { "ZADD", "failovers:aggregated-by-time:" .. w, tostring(T), "pod1" }
    end
    want[#want + 1] = { "SADD", "pods-with-failovers:" .. wins[3], "pod1" }
    want[#want + 1] = { "EXPIRE", "pods-with-failovers:" .. wins[3], "5184000" }
    want[#want + 1] = { "EXEC" }
    assert.same(want, t.redis.sent)
  end)

  it("leaves observers alone", function()
    local r = reconfig(t, "observer")
    assert.same({ "ok" }, r.outcomes)
    assert.same({}, t.redis.sent)
  end)

  it("fails, so Sentinel retries, when the store is down", function()
    t.redis.fail("connection refused")
    local r = reconfig(t, "leader")
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("connection refused", r.handlers[1].error)
  end)

  it("registers nothing when metrics are off", function()
    local off = testing.load{ config = { metrics = { enabled = false } },
                              rules = testing.shipped_rules("10-failover-metrics.lua") }
    assert.same({}, reconfig(off, "leader").handlers)
    off:close()
  end)
end)
