-- The shipped rule 53-stream.lua: every event into a Redis Stream, once
-- across the Sentinels.
local testing = require("eventilator.testing")

local SDOWN = { "+sdown", "master pod1 127.0.0.1 17000" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel, time = 1795600000 }
end

local function xadds(t)
  local out = {}
  for _, c in ipairs(t.redis.sent) do
    if c[1] == "XADD" then out[#out + 1] = c end
  end
  return out
end

describe("53-stream.lua", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.shipped_rules("53-stream.lua"),
                      config = { stream = { enabled = true, key = "ops:events", maxlen = 1000 } } }
  end)
  after_each(function() t:close() end)

  it("adds the event to the stream", function()
    local r = from(t, "pid:11", SDOWN)
    assert.same({ "ok" }, r.outcomes)
    local x = xadds(t)
    assert.equal(1, #x)
    assert.same({ "XADD", "ops:events", "MAXLEN", "~", "1000", "*", "name", "+sdown", "pod", "pod1",
                  "text", "master pod1 127.0.0.1 17000" }, { table.unpack(x[1], 1, 12) })
  end)

  it("adds it once when every Sentinel reports it", function()
    assert.same({ "ok" }, from(t, "pid:11", SDOWN).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", SDOWN).outcomes)
    assert.same({ "ok" }, from(t, "pid:13", SDOWN).outcomes)
    assert.equal(1, #xadds(t))
  end)

  it("fails, so Sentinel retries, when XADD is refused", function()
    t.redis.answer("XADD", { err = "OOM command not allowed when used memory > 'maxmemory'" })
    local r = from(t, "pid:11", SDOWN)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("OOM", r.handlers[1].error)
  end)

  it("fails when the store is down", function()
    t.redis.fail("connection refused")
    local r = from(t, "pid:11", SDOWN)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
  end)
end)
