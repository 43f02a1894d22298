-- examples/rules/stream.lua: failover events, once each, into a stream on
-- the ops Redis (stream.redis).
local testing = require("eventilator.testing")

local SWITCH = { "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel }
end

local function xadds(t)
  local out = {}
  for _, c in ipairs(t.redis.sent) do
    if c[1] == "XADD" then out[#out + 1] = c end
  end
  return out
end

describe("stream.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("stream.lua"),
                      config = { stream = { key = "ops:redis-failovers", maxlen = 10000,
                                            redis = { host = "10.0.0.40", port = 6379 } } } }
  end)
  after_each(function() t:close() end)

  it("adds +switch-master to the ops stream, once across the Sentinels", function()
    assert.same({ "ok" }, from(t, "pid:11", SWITCH).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", SWITCH).outcomes)
    local x = xadds(t)
    assert.equal(1, #x)
    assert.same({ "XADD", "ops:redis-failovers", "MAXLEN", "~", "10000", "*", "name", "+switch-master",
                  "pod", "pod1" }, { table.unpack(x[1], 1, 10) })
    local ops = {} -- the dedupe claims go to config.redis, XADD to stream.redis
    for _, c in ipairs(t.redis.connects) do
      if c.host == "10.0.0.40" then ops[#ops + 1] = c.port end
    end
    assert.same({ 6379 }, ops)
  end)

  it("takes the failover's steps and not the rest", function()
    assert.same({ "ok" }, from(t, "pid:11", { "+try-failover", "master pod1 127.0.0.1 17000" }).outcomes)
    assert.same({}, from(t, "pid:11", { "+sdown", "master pod1 127.0.0.1 17000" }).handlers)
    assert.equal(1, #xadds(t))
  end)

  it("fails, so Sentinel retries, when XADD is refused", function()
    t.redis.answer("XADD", { err = "NOPERM this user has no permissions to run the 'xadd' command" })
    local r = from(t, "pid:11", SWITCH)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("NOPERM", r.handlers[1].error)
  end)
end)
