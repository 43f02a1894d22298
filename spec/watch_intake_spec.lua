-- Watch mode's intake against a hostile fake Sentinel (spec/support/fakesentinel.py),
-- each case beside a real redis-sentinel where one fits: what a Sentinel can
-- send must never stall, starve or swell the watcher (issue 18). Each case
-- waits on a condition (a handled event, a log line, the stats line); the
-- bounds on time and memory are generous for a loaded machine.
local procs = require("procs")
local watcher = require("watcher")
local hostile = require("hostile")

local is, note = watcher.is, watcher.note

local function watch(seeds, extra)
  local list = {}
  for i, s in ipairs(seeds) do list[i] = string.format("%q", s) end
  return watcher.new{ config = string.format("watch = { sentinels = { %s }, %s }", table.concat(list, ", "),
    extra or "") }
end

describe("watch mode intake, with a hostile fake Sentinel", function()
  local peers, w = {}, nil
  local function peer(p)
    peers[#peers + 1] = p
    return p
  end

  after_each(function()
    if w then
      w:finish(60)
      w = nil
    end
    for _, p in ipairs(peers) do p.stop() end
    peers = {}
  end)

  it("handles an event that came in the same read as the PSUBSCRIBE reply at once", function()
    local f = peer(hostile.fake{ "--coalesce", "+sdown=master pod1 127.0.0.1 6379" })
    w = watch({ f.addr })
    w:record("10-record.lua", { "+sdown" })
    w:start()
    -- nothing else comes from that Sentinel: only a drained reader finds it
    w:wait_handled(is("+sdown", "master", "pod1"), 1, 15, "the coalesced +sdown")
    assert.are.equal(1, w:count(is("+sdown")))
  end)

  it("is held up by no Sentinel that names 10 000 others, 70 of them silent, and stops on SIGTERM within a second",
    function()
      local s = peer(hostile.sentinel())
      local f = peer(hostile.fake{ "--master", "pod9:127.0.0.1:1", "--name", "10000", "--silent", "70" })
      w = watch({ s.addr, f.addr })
      w:record("10-record.lua", { "+set" })
      w:start()
      w:wait_log("connected and subscribed", 2, 20)
      procs.wait(function() return f.commands():find("SENTINEL SENTINELS pod9", 1, true) ~= nil end, 20,
        "the fake asked for its Sentinels")
      w:wait_log("not watched", 1, 20)
      -- the silent ones are being connected now: a real event still runs at once
      local t0 = hostile.now()
      s.event()
      w:wait_handled(is("+set"), 1, 10, "the real Sentinel's +set")
      local took = hostile.now() - t0
      note("a real +set handled %.2f s after it was set, beside 63 silent Sentinels", took)
      assert.is_true(took < 5, "the +set waited " .. took .. " s")
      -- the cap is said once, not once per address named
      assert.are.equal(1, w:log_count("not watched"))
      assert.is_true(w:log_count("discovered") <= 64)
      t0 = hostile.now()
      w:signal("TERM")
      procs.wait(function() return w:exit_code() ~= nil end, 30, "the watcher to exit")
      local stop = hostile.now() - t0
      note("SIGTERM to exit: %.2f s", stop)
      assert.are.equal(0, w:exit_code())
      assert.is_true(stop < 1.5, "SIGTERM took " .. stop .. " s")
      w.pid = nil
    end)

  it("refuses a 4 GB message and a 2 000 000 000-element reply without growing", function()
    local big = peer(hostile.fake{ "--huge", "PSUBSCRIBE=bulk", "--huge-send", tostring(300 << 20) })
    local arr = peer(hostile.fake{ "--master", "pod1:127.0.0.1:1", "--huge", "SENTINEL MASTERS=array",
      "--huge-send", tostring(100 << 20) })
    w = watch({ big.addr, arr.addr })
    w:start()
    local t0 = hostile.now()
    w:wait_log(big.addr .. ": disconnected: reply larger than", 1, 20)
    w:wait_log(arr.addr .. ": SENTINEL MASTERS: reply larger than", 1, 20)
    local rss = hostile.rss_kb(w.pid)
    note("both refused in %.2f s; watcher RSS %d KiB", hostile.now() - t0, rss)
    assert.is_true(rss < 100 * 1024, "RSS " .. rss .. " KiB")
    -- it reconnects (and is refused again) without a crash
    w:wait_log(big.addr .. ": disconnected: reply larger than", 2, 30)
    assert.is_true(hostile.rss_kb(w.pid) < 100 * 1024)
    assert.is_nil(w:exit_code())
  end)

  it("keeps another Sentinel's event through a flood, and logs the drops once a second with counts", function()
    local s = peer(hostile.sentinel())
    local f = peer(hostile.fake{})
    w = watch({ s.addr, f.addr }, "queue = 50, concurrency = 1, discover = false")
    w:record("10-record.lua", { "+set" })
    -- each flooded event costs 10 ms of CPU: the queue stays full while the flood lasts
    w:rule("20-slow.lua", [[on("+sdown", function() local t = os.clock() repeat until os.clock() - t > 0.01 end)]])
    w:start()
    w:wait_log("connected and subscribed", 2, 20)
    local t0 = hostile.now()
    assert.are.equal("OK", f.cli("FAKE.FLOOD", "10000", "+sdown", "master f%d 10.0.0.1 6379", "2000"))
    w:wait_log("queue full", 1, 20)
    s.event()
    w:wait_handled(is("+set"), 1, 20, "the real Sentinel's +set, through the flood")
    procs.wait(function() return w:stats(10).heard >= 10001 end, 60, "the whole flood heard")
    local secs = hostile.now() - t0
    local st = w:stats(10)
    local lines = w:log_count("queue full")
    note("flood of 10000 in %.1f s: %d dropped, %d log line(s) about it", secs, st.dropped, lines)
    assert.is_true(st.dropped > 1000, "dropped " .. st.dropped)
    assert.is_true(lines <= secs + 3, lines .. " lines in " .. secs .. " s")
    -- each summary names the Sentinel and how many: they add up to the count
    local sum = 0
    for n in w:logtext():gmatch("queue full[^\n]-" .. f.addr:gsub("%p", "%%%0") .. " (%d+)") do sum = sum + n end
    procs.wait(function()
      sum = 0
      for n in w:logtext():gmatch("queue full[^\n]-" .. f.addr:gsub("%p", "%%%0") .. " (%d+)") do sum = sum + n end
      return sum == st.dropped
    end, 5, "the summaries to add up to " .. st.dropped .. " (now " .. sum .. ")")
    assert.are.equal(1, w:count(is("+set")))
  end)

  it("keeps a handled event's dedupe entry through 70 000 events nobody handles", function()
    local a = peer(hostile.fake{})
    local b = peer(hostile.fake{})
    w = watch({ a.addr, b.addr }, "discover = false, dedupe_window = 600")
    w:record("10-record.lua", { "+odown" })
    w:start()
    w:wait_log("connected and subscribed", 2, 20)
    local odown = "master pod1 127.0.0.1 6379 #quorum 2/2"
    assert.are.equal("1", a.cli("PUBLISH", "+odown", odown))
    w:wait_handled(is("+odown"), 1, 10)
    -- more than the ring holds (65 536), none of them matched
    assert.are.equal("OK", a.cli("FAKE.FLOOD", "70000", "+slave", "slave 10.0.0.1:%d 10.0.0.1 1 @ pod1 127.0.0.1 6379"))
    procs.wait(function() return w:stats(10).heard >= 70001 end, 120, "the 70 000 heard")
    assert.are.equal("1", b.cli("PUBLISH", "+odown", odown))
    procs.wait(function() return w:stats(10).heard >= 70002 end, 10, "the second report heard")
    local st = w:stats(10)
    assert.are.equal(1, st.duplicates)
    assert.are.equal(1, w:count(is("+odown")))
  end)

  it("SIGHUP moves state_dir: the masters' file and the rules cache follow the config", function()
    local f = peer(hostile.fake{})
    w = watch({ f.addr }, "discover = false")
    w:record("10-record.lua", { "+switch-master" })
    w:start()
    w:wait_log("connected and subscribed", 1, 20)
    local moved = w.dir .. "/state2"
    procs.write(w.conf, procs.read(w.conf) .. string.format("state_dir = %q\n", moved))
    w:signal("HUP")
    w:wait_log("config and rules reloaded", 1, 20)
    assert.are.equal("1", f.cli("PUBLISH", "+switch-master", "pod1 127.0.0.1 6379 127.0.0.1 6380"))
    w:wait_handled(is("+switch-master"), 1, 10)
    procs.wait(function() return procs.read(moved .. "/watch-masters") ~= nil end, 10, "watch-masters in the new state_dir")
    assert.truthy((procs.read(moved .. "/watch-masters")):find("pod1 127.0.0.1 6380", 1, true))
    assert.is_nil(procs.read(w.state .. "/watch-masters"))
    local cached = procs.sh("ls " .. procs.quote(moved .. "/rules-cache") .. " 2>/dev/null")
    assert.truthy(cached:find("%.luac"), "no rules cache in " .. moved)
  end)
end)
