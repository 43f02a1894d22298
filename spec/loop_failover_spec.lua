-- Record on a real loopback failover (three Sentinels, script mode), then
-- replay the file with --run against the same rules and store: the same
-- outcomes per call as live, and the leader-only work done once more, by the
-- Sentinel that did it live; and `eventilator history` shows it, as text,
-- JSON and a page Chromium renders. Its own file: a failover on a loaded
-- machine can take minutes (Sentinel's TILT), and each spec file has its own
-- time limit. A loaded Sentinel may also fail over a second time: the counts
-- are per failover, from what the Sentinels logged (c:did()).
local procs = require("procs")
local constellation = require("constellation")
local chromium = require("chromium")
local json = require("cjson")

local function lines_of(text)
  local t = {}
  for l in (text or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- eventilator history on the recording: one failover that switched the
-- master, led by the Sentinel that recorded +elected-leader, every call in a
-- failover or counted outside, every handler ok; the page has a lane per
-- Sentinel and a mark per call.
-- failovers: how many the Sentinels raised (a loaded one may fail over twice); the first is
-- the one away from the master killed.
local function check_history(conf, snap, recorded, old_port, dir, failovers)
  local function history(...)
    local out, rc = procs.sh(string.format("EVENTILATOR_CONF=%s %s/bin/eventilator history --file %s %s 2>%s",
      procs.quote(conf), procs.quote(procs.build), procs.quote(snap), table.concat({ ... }, " "),
      procs.quote(dir .. "/history.err")))
    assert.equal(0, rc, procs.read(dir .. "/history.err"))
    return out
  end
  local leader
  for _, r in ipairs(recorded) do
    if r.args[1] == "+elected-leader" then leader = leader or r.sentinel end
  end
  local fs = json.decode(history("--json"))
  local switched, events, lanes = {}, 0, 0
  for _, f in ipairs(fs) do
    events, lanes = events + #f.events, lanes + #f.sentinels
    if f.to then switched[#switched + 1] = f end
    for _, e in ipairs(f.events) do
      assert.equal("ok", e.status, json.encode(e))
      for _, h in ipairs(e.handlers) do assert.equal("ok", h.outcome, json.encode(e)) end
    end
  end
  assert.equal(failovers, #switched, history())
  local f = switched[1]
  assert.equal("pod1", f.pod)
  assert.equal("127.0.0.1:" .. old_port, f.from)
  assert.equal(leader, f.leader)
  assert.equal("+sdown", f.events[1].name)
  assert.equal(0, f.events[1].offset)
  assert.is_true(#f.sentinels >= 2, "the Sentinels that reported it: " .. table.concat(f.sentinels, ", "))
  assert.is_number(f.phases.switched)
  local text = history()
  local outside = tonumber(text:match("; (%d+) calls? outside any failover")) or 0
  assert.equal(#recorded, events + outside, text) -- every call shown once, or counted outside
  assert.matches("client%-reconfig pod1 leader start [^\n]* 10%-failover%-metrics:%d+ ok", text)

  local page = dir .. "/history.html"
  history("--html", procs.quote(page))
  local dom = chromium.dom(page)
  assert.equal(lanes, chromium.count(dom, '<div class="lane"'))
  assert.equal(events, chromium.count(dom, '<div class="mark '))
  assert.equal(events, chromium.count(dom, '<div class="mark ok"'))
  local colors, _, _, pixels = chromium.colors(chromium.screenshot(page, dir .. "/history.png"), { "2e9d4f" })
  assert.is_true(colors > 10 and pixels["2e9d4f"] > 0, "the screenshot is blank: " .. colors .. " colors")
end

describe("a recorded failover", function()
  it("replays with --run to the outcomes it had live, leader-only work once; history shows it", function()
    assert(chromium.available(), "chromium is not installed (scripts/deps.sh installs it)")
    local dir = procs.tmpdir()
    local conf, rules, rec = dir .. "/eventilator.conf", dir .. "/rules", dir .. "/calls.jsonl"
    procs.shipped_rules(rules)
    -- once per failover, whichever Sentinel's +switch-master comes first: who did it, in a list
    procs.write(rules .. "/60-once.lua", [[
on("+switch-master", function(ev)
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end
  if not first then return true end
  local c, cerr = redis.connect()
  if not c then return nil, cerr end
  local _, perr = c:call("RPUSH", "once", dedupe.owner())
  c:close()
  if perr then return nil, perr end
  return true
end)
]])
    local c = constellation.start{ conf = conf, setup = function(cc)
      procs.write(conf, table.concat({
        string.format("log = { target = %q, level = \"debug\" }", dir .. "/eventilator.log"),
        string.format("rules_dir = %q", rules), string.format("state_dir = %q", dir .. "/state"),
        string.format("redis = { host = \"127.0.0.1\", port = %d, timeout = 5 }", cc.store.port),
        string.format("record = %q", rec),
      }, "\n") .. "\n")
    end }
    local ok, err = pcall(function()
      local old_port = c:kill_master()
      -- generous: on a loaded machine (the sanitized build) Sentinels may enter TILT for 30 s
      c:wait_failover(180)
      -- what was recorded once every call was over: a later call (a replica's +sdown) may still
      -- append to the file, so the replay reads this very snapshot
      local snap = rec .. ".snapshot"
      local _, raised = c:settled(function() procs.write(snap, procs.read(rec)) end, 180)
      local d = c:did(raised)
      local live = lines_of(procs.read(snap))
      local recorded = {}
      for i, l in ipairs(live) do recorded[i] = json.decode(l) end
      local switches, leaders = 0, 0
      for _, r in ipairs(recorded) do
        if r.args[1] == "+switch-master" then switches = switches + 1 end
        if r.argv0 == "reconfigurator" and r.args[2] == "leader" then leaders = leaders + 1 end
        assert.equal(0, r.exit, json.encode(r))
      end
      assert.equal(d.switches, switches, "each Sentinel reports +switch-master")
      assert.equal(d.leaders, leaders)
      local failovers = #d.promoted
      assert.equal(tostring(failovers), c:store_cli("llen", "once"))
      local owners = c:store_cli("lrange", "once", "0", "-1")
      local counters = c:store_cli("hgetall", "failovers:success:pod1:counters")

      -- the same file, the same rules and store: the same Sentinel wins the dedupe again
      local out, rc = procs.sh(string.format("EVENTILATOR_CONF=%s %s/bin/eventilator test --replay %s --run --json 2>%s",
        procs.quote(conf), procs.quote(procs.build), procs.quote(snap), procs.quote(dir .. "/replay.err")))
      assert.equal(0, rc, procs.read(dir .. "/replay.err"))
      local results = json.decode(out)
      assert.equal(#recorded, #results)
      for i, r in ipairs(results) do
        assert.equal(recorded[i].exit, r.exit)
        for _, h in ipairs(r.handlers) do assert.equal("ok", h.outcome, json.encode(r)) end
      end
      -- once more per failover: the replay did it once, by the Sentinel that did it live
      assert.equal(tostring(2 * failovers), c:store_cli("llen", "once"))
      local again = c:store_cli("lrange", "once", tostring(failovers), "-1")
      local function sorted(text)
        local t = lines_of(text .. "\n")
        table.sort(t)
        return t
      end
      assert.same(sorted(owners), sorted(again))
      -- each leader's failover was recorded once more, at the recorded time (same windows)
      local before, after = {}, {}
      for k, v in counters:gmatch("([^\n]+)\n([^\n]+)") do before[k] = tonumber(v) end
      for k, v in c:store_cli("hgetall", "failovers:success:pod1:counters"):gmatch("([^\n]+)\n([^\n]+)") do
        after[k] = tonumber(v)
      end
      assert.is_not_nil(next(before))
      for k, v in pairs(before) do assert.equal(2 * v, after[k], k) end

      check_history(conf, snap, recorded, old_port, dir, d.leaders)
    end)
    local logs = ok and "" or c:sentinel_logs()
    c:stop()
    procs.rmtree(dir)
    assert(ok, tostring(err) .. "\n" .. logs)
  end)
end)
