-- What Sentinel passes, refused through the binary when it can never be a
-- real call: exit 2 (Sentinel never retries it) and a clear log line.
local runner = require("runner")

describe("arguments that can never be a Sentinel call", function()
  local ctx
  before_each(function()
    ctx = runner.new()
    ctx:rule("10-all.lua", 'on("*", function(ev) log.info("ran %s epoch=%s", ev.name, tostring(ev.epoch)) end)\n')
  end)
  after_each(function() ctx:cleanup() end)

  it("an epoch of 2^63 or more is exit 2, never a negative ev.epoch", function()
    local rc, log = ctx:run("eventilator", "+new-epoch", "9223372036854775808")
    assert.equal(2, rc, log)
    assert.matches("epoch", log)
    assert.not_matches("ran ", log)
    rc, log = ctx:run("eventilator", "+new-epoch", "9223372036854775807")
    assert.equal(0, rc, log)
    assert.matches("ran %+new%-epoch epoch=9223372036854775807", log)
  end)

  it("`--` is not an event name", function()
    local rc, log = ctx:run("eventilator", "--", "master mymaster 127.0.0.1 6379")
    assert.equal(2, rc, log)
    assert.matches("is not an event name", log)
    assert.not_matches("ran ", log)
  end)

  it("in reconfigurator mode the role is leader or observer", function()
    local rc, log = ctx:run("reconfigurator", "mymaster", "follower", "start", "10.0.0.1", "6379", "10.0.0.2", "6379")
    assert.equal(2, rc, log)
    assert.matches("bad role 'follower': expected leader or observer", log)
    assert.not_matches("ran ", log)
    rc, log = ctx:run("reconfigurator", "mymaster", "observer", "start", "10.0.0.1", "6379", "10.0.0.2", "6379")
    assert.equal(0, rc, log)
    assert.matches("ran client%-reconfig", log)
  end)
end)
