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

  it("claims an event itself: two reports of one +odown, with different votes, act once", function()
    local h = require("eventilator.host").new()
    local a = h.parse({ "+odown", "master pod9 127.0.0.1 6379 #quorum 2/2" })
    local b = h.parse({ "+odown", "master pod9 127.0.0.1 6379 #quorum 3/2" })
    assert.is_true(dedupe.once(a, 60, { owner = "s1:100" }))
    assert.is_false(dedupe.once(b, 60, { owner = "s2:200" }))
    assert.is_true(dedupe.once(a, 60, { owner = "s1:100" })) -- the winner's retry
    assert.are.equal("s1:100", procs.cli(srv.port, "GET", "eventilator:dedupe:+odown master pod9 127.0.0.1 6379"))
    assert.matches("^[^:]+:%d+$", dedupe.owner())
  end)

  it("raises on misuse", function()
    assert.has_error(function() dedupe.once("", 60) end)
    assert.has_error(function() dedupe.once("k", -1) end)
    -- a table the host did not make has no identity: the handler's ev is needed
    assert.has_error(function() dedupe.key({ name = "+odown", text = "master pod1 127.0.0.1 6379 #quorum 2/3" }) end)
    assert.has_error(function() dedupe.once({ name = "+odown" }) end)
  end)
end)

-- dedupe.key(ev): the event's identity (docs/watch.md, "Event identity"), the
-- same for every report of one event, different for different events. The
-- reports are the catalogue's formats (../shared/sentinel/events.md 1.3) and
-- a real failover's calls (corpus-failover.jsonl).
describe("dedupe.key", function()
  local h, dedupe
  setup(function()
    h = require("eventilator.host").new()
    dedupe = require("eventilator.dedupe")
  end)

  -- The key of a report (name, description) by Sentinel `by`.
  local function key(name, text, by)
    return dedupe.key(assert(h.parse({ name, text })), by or "10.0.0.7:26379")
  end

  local RID, RID2 = "3e0933e0f052beed0ad6b16337529bae22b2c1f9", "2c1d09db6b7d9f4a4f5e0a2f9c3e1d7a8b6c87f7"
  local M, M2 = "mymaster 10.0.0.1 6379", "mymaster 10.0.0.2 6379" -- the master before and after a failover

  -- Every event whose reports can differ between Sentinels: two (or more) reports of one event.
  local same = {
    { "+odown", "master mymaster 10.0.0.1 6379 #quorum 2/2", "master mymaster 10.0.0.1 6379 #quorum 3/2",
      "master mymaster 10.0.0.1 6379 #quorum 3/3" },
    { "+sentinel-address-update", "sentinel " .. RID .. " 10.0.0.9 26379 @ " .. M .. " 2 additional matching instances",
      "sentinel " .. RID .. " 10.0.0.9 26379 @ " .. M2 .. " 0 additional matching instances" },
    { "+config-update-from", "sentinel " .. RID .. " 10.0.0.7 26379 @ " .. M,
      "sentinel " .. RID2 .. " 10.0.0.8 26379 @ " .. M },
  }
  -- the events about a replica or a Sentinel: the master's address after '@' is each reporter's
  for _, e in ipairs({
    { "+sdown", "slave" }, { "-sdown", "slave" }, { "+sdown", "sentinel" }, { "-sdown", "sentinel" },
    { "+selected-slave", "slave" }, { "+promoted-slave", "slave" }, { "+slave", "slave" },
    { "+sentinel", "sentinel" }, { "+sentinel-invalid-addr", "sentinel" }, { "+reboot", "slave" },
    { "+convert-to-slave", "slave" }, { "+fix-slave-config", "slave" },
    { "+failover-state-send-slaveof-noone", "slave" }, { "+failover-state-wait-promotion", "slave" },
    { "+slave-reconf-sent", "slave" }, { "+slave-reconf-inprog", "slave" }, { "+slave-reconf-done", "slave" },
    { "-slave-reconf-sent-timeout", "slave" }, { "+slave-reconf-sent-be", "slave" },
  }) do
    local inst = e[2] == "slave" and "slave 10.0.0.3:6379 10.0.0.3 6379" or ("sentinel " .. RID .. " 10.0.0.7 26379")
    same[#same + 1] = { e[1], inst .. " @ " .. M, inst .. " @ " .. M2 }
  end
  for _, n in ipairs({ "+role-change", "-role-change" }) do
    same[#same + 1] = { n, "slave 10.0.0.3:6379 10.0.0.3 6379 @ " .. M .. " new reported role is master",
      "slave 10.0.0.3:6379 10.0.0.3 6379 @ " .. M2 .. " new reported role is master" }
  end

  it("is the same for every report of one event, from any Sentinel", function()
    for _, e in ipairs(same) do
      local first = key(e[1], e[2], "10.0.0.7:26379")
      for i = 3, #e do
        assert.are.equal(first, key(e[1], e[i], "10.0.0.8:26379"), e[1] .. " " .. e[i])
      end
    end
    -- client-reconfig: the leader's call and the observers' name one failover
    local function reconfig(role)
      return dedupe.key(assert(h.parse({ "pod1", role, "start", "10.0.0.1", "6379", "10.0.0.2", "6379" }, true)),
        "10.0.0.7:26379")
    end
    assert.are.equal(reconfig("leader"), reconfig("observer"))
    assert.are.equal("client-reconfig pod1 start 10.0.0.1 6379 10.0.0.2 6379", reconfig("leader"))
  end)

  it("names what every reporter agrees on", function()
    assert.are.equal("+odown master mymaster 10.0.0.1 6379", key("+odown", "master " .. M .. " #quorum 3/2"))
    assert.are.equal("+sdown slave 10.0.0.3:6379 10.0.0.3 6379 @ mymaster",
      key("+sdown", "slave 10.0.0.3:6379 10.0.0.3 6379 @ " .. M))
    assert.are.equal("+config-update-from @ mymaster 10.0.0.1 6379",
      key("+config-update-from", "sentinel " .. RID .. " 10.0.0.7 26379 @ " .. M))
    assert.are.equal("+switch-master mymaster 10.0.0.1 6379 10.0.0.2 6379",
      key("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379"))
    assert.are.equal("+vote-for-leader " .. RID .. " 1 by 10.0.0.8:26379", key("+vote-for-leader", RID .. " 1", "10.0.0.8:26379"))
    assert.are.equal("+x-newer-sentinel some text", key("+x-newer-sentinel", "some text"))
  end)

  it("tells different events apart", function()
    local reports = {
      -- every event of the catalogue once (events.md's examples; the ones in `same` below)...
      { "+monitor", "master " .. M .. " quorum 2" }, { "-monitor", "master " .. M },
      { "+reset-master", "master " .. M }, { "+set", "master " .. M .. " quorum 2" },
      { "+sdown", "master " .. M }, { "-sdown", "master " .. M }, { "-odown", "master " .. M },
      { "+new-epoch", "1" }, { "+vote-for-leader", RID .. " 1" },
      { "+try-failover", "master " .. M }, { "+elected-leader", "master " .. M },
      { "+failover-state-select-slave", "master " .. M }, { "-failover-abort-not-elected", "master " .. M },
      { "-failover-abort-no-good-slave", "master " .. M }, { "-failover-abort-slave-timeout", "master " .. M },
      { "+failover-state-reconf-slaves", "master " .. M }, { "+failover-end-for-timeout", "master " .. M },
      { "+failover-end", "master " .. M }, { "+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379" },
      { "+tilt", "#tilt mode entered" }, { "-tilt", "#tilt mode exited" },
      { "-script-error", "/etc/redis/notify.sh 0 2" }, { "-script-timeout", "/etc/redis/notify.sh 17863" },
      { "+sentinel-address-switch", "master " .. M .. " ip 10.0.0.9 port 26379 for " .. RID },
      { "+reboot", "master " .. M }, { "+role-change", "master " .. M .. " new reported role is slave" },
      { "+script-child", "15068" }, { "-script-child", "16998 1 0" },
      { "-cmd-link-reconnection", "master " .. M .. " #Connection refused" },
      { "-pubsub-link-reconnection", "master " .. M .. " #Connection refused" },
      -- ...and what makes another event:
      { "+odown", "master mymaster 10.0.0.2 6379 #quorum 2/2" },   -- another master address
      { "+odown", "master other 10.0.0.1 6379 #quorum 2/2" },      -- another master
      { "+sdown", "slave 10.0.0.4:6379 10.0.0.4 6379 @ " .. M },   -- another replica
      { "+sdown", "slave 10.0.0.3:6379 10.0.0.3 6379 @ other 10.0.0.1 6379" }, -- under another master
      { "+sdown", "sentinel " .. RID2 .. " 10.0.0.8 26379 @ " .. M }, -- another Sentinel
      { "+new-epoch", "2" },
      { "+switch-master", "mymaster 10.0.0.2 6379 10.0.0.1 6379" }, -- the way back
      { "+config-update-from", "sentinel " .. RID .. " 10.0.0.7 26379 @ " .. M2 }, -- the next failover
      { "-role-change", "slave 10.0.0.3:6379 10.0.0.3 6379 @ " .. M .. " new reported role is slave" },
      { "+role-change", "slave 10.0.0.3:6379 10.0.0.3 6379 @ " .. M .. " new reported role is slave" },
      { "+set", "master " .. M .. " quorum 3" },
      { "+sentinel-address-update", "sentinel " .. RID2 .. " 10.0.0.9 26379 @ " .. M .. " 2 additional matching instances" },
    }
    for _, e in ipairs(same) do reports[#reports + 1] = { e[1], e[2] } end
    local seen = {}
    for _, r in ipairs(reports) do
      local k = key(r[1], r[2])
      assert.is_nil(seen[k], string.format("%s %s and %s have one key: %s", r[1], r[2], tostring(seen[k]), k))
      seen[k] = r[1] .. " " .. r[2]
    end
    assert.are_not.equal(dedupe.key(assert(h.parse({ "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6379" }, true))),
      dedupe.key(assert(h.parse({ "pod1", "leader", "start", "10.0.0.2", "6379", "10.0.0.1", "6379" }, true))))
  end)

  it("names the reporter of an event about the reporting Sentinel itself", function()
    for _, r in ipairs({ { "+vote-for-leader", RID .. " 1" }, { "-failover-abort-not-elected", "master " .. M },
                         { "+tilt", "#tilt mode entered" }, { "-tilt", "#tilt mode exited" },
                         { "-script-error", "/etc/redis/notify.sh 0 2" }, { "-script-timeout", "/etc/redis/notify.sh 1" } }) do
      assert.are_not.equal(key(r[1], r[2], "10.0.0.7:26379"), key(r[1], r[2], "10.0.0.8:26379"), r[1])
      assert.are.equal(key(r[1], r[2], "10.0.0.7:26379"), key(r[1], r[2], "10.0.0.7:26379"), r[1])
    end
    -- no reporter given: ev.sentinel (watch mode), else this Sentinel (dedupe.owner())
    local ev = assert(h.parse({ "+vote-for-leader", RID .. " 1" }))
    assert.are.equal("+vote-for-leader " .. RID .. " 1 by " .. dedupe.owner(), dedupe.key(ev))
    ev.sentinel = "10.0.0.9:26379"
    assert.are.equal("+vote-for-leader " .. RID .. " 1 by 10.0.0.9:26379", dedupe.key(ev))
    -- and not for the others: owner() is not even asked
    local own = dedupe.owner
    dedupe.owner = function() error("asked") end
    local ok, k = pcall(dedupe.key, assert(h.parse({ "+odown", "master " .. M .. " #quorum 2/2" })))
    dedupe.owner = own
    assert.is_true(ok, k)
  end)

  it("gives a real failover's reports of one event one key (the corpus)", function()
    local json = require("cjson")
    local keys = {} -- scenario -> key -> reports
    local n = 0
    for line in io.lines(procs.shared .. "/sentinel/corpus-failover.jsonl") do
      local c = json.decode(line)
      n = n + 1
      local ev = assert(h.parse(c.args, c.argv0 == "reconfigurator"))
      local k = dedupe.key(ev, "corpus line " .. n) -- each line a Sentinel of its own
      keys[c.scenario] = keys[c.scenario] or {}
      keys[c.scenario][k] = (keys[c.scenario][k] or 0) + 1
    end
    local fo = keys["master-down-failover"]
    assert.are.equal(3, fo["+odown master pod1 127.0.0.1 17000"]) -- #quorum 3/2, 2/2, 3/2
    assert.are.equal(3, fo["client-reconfig pod1 start 127.0.0.1 17000 127.0.0.1 17002"]) -- leader, observers
    assert.are.equal(2, fo["+config-update-from @ pod1 127.0.0.1 17000"])
    assert.are.equal(3, fo["+switch-master pod1 127.0.0.1 17000 127.0.0.1 17002"])
    assert.are.equal(3, fo["+sdown slave 127.0.0.1:17000 127.0.0.1 17000 @ pod1"])
    local votes = 0
    for k, count in pairs(fo) do
      if k:find("^%+vote%-for%-leader ") then
        votes = votes + 1
        assert.are.equal(1, count, k) -- each Sentinel's own vote
      end
    end
    assert.are.equal(3, votes)
    assert.are.equal(3, keys["manual-failover"]["client-reconfig pod1 start 127.0.0.1 17002 127.0.0.1 17001"])
    assert.are.equal(3, keys["old-master-returns"]["-sdown slave 127.0.0.1:17000 127.0.0.1 17000 @ pod1"])
  end)
end)
