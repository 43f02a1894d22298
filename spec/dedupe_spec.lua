-- dedupe.once against a real redis-server: one claimant per key, a
-- claimant's own retry still acts, an unreachable store fails.
local procs = require("procs")

describe("eventilator.dedupe", function()
  local srv, dedupe
  local config = { redis = {}, dedupe = { prefix = "eventilator:dedupe:", ttl = 300 } }
  setup(function()
    srv = procs.start_redis()
    config.redis = { host = "127.0.0.1", port = srv.port, timeout = 1 }
    package.loaded["eventilator.config"] = config
    dedupe = require("eventilator.dedupe")
  end)
  teardown(function()
    package.loaded["eventilator.config"] = nil
    srv.stop()
  end)

  it("lets the first Sentinel act and the others skip", function()
    assert.is_true(dedupe.once("+odown pod1", 60, { owner = "s1:100" }))
    assert.is_false(dedupe.once("+odown pod1", 60, { owner = "s2:200" }))
    assert.is_false(dedupe.once("+odown pod1", 60, { owner = "s3:300" }))
    local ttl = tonumber(procs.cli(srv.port, "TTL", "eventilator:dedupe:+odown pod1"))
    assert.is_true(ttl > 50 and ttl <= 60)
    assert.are.equal("s1:100", procs.cli(srv.port, "GET", "eventilator:dedupe:+odown pod1"))
  end)

  it("lets the winner's retry act again", function()
    assert.is_true(dedupe.once("k-retry", 60, { owner = "s1:100" }))
    assert.is_true(dedupe.once("k-retry", 60, { owner = "s1:100" }))
  end)

  it("claims again after the ttl", function()
    assert.is_true(dedupe.once("k-short", 1, { owner = "a" }))
    procs.wait(function() return procs.cli(srv.port, "EXISTS", "eventilator:dedupe:k-short") == "0" end, 10,
      "the claim to expire")
    assert.is_true(dedupe.once("k-short", 1, { owner = "b" }))
  end)

  it("fails rather than acting twice when the store is down", function()
    local ok, err = dedupe.once("k-down", 60, { port = procs.closed_port() })
    assert.is_nil(ok)
    assert.matches("^dedupe: redis 127%.0%.0%.1:%d+: connection refused", err)
  end)

  it("names an event by name and description", function()
    assert.are.equal("+odown master pod1 127.0.0.1 6379 #quorum 2/3",
      dedupe.key({ name = "+odown", text = "master pod1 127.0.0.1 6379 #quorum 2/3" }))
    assert.matches("^[^:]+:%d+$", dedupe.owner())
  end)

  it("raises on misuse", function()
    assert.has_error(function() dedupe.once("", 60) end)
    assert.has_error(function() dedupe.once("k", -1) end)
  end)
end)
