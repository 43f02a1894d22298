-- Watch mode (`eventilator watch`, docs/watch.md) against real peers, part 1 of 3:
-- a Sentinel constellation on loopback (spec/support/constellation.lua, no
-- scripts configured). Parts 2 and 3: watch_local_spec.lua, watch_scale_spec.lua.
-- Handlers record what they saw (spec/support/watcher.lua). Nothing here asserts a duration.
local procs = require("procs")
local constellation = require("constellation")
local watcher = require("watcher")

local POD = constellation.NAME
local function runner_count(text, plain) return require("runner").count(text, plain, true) end

local note = watcher.note

local is = watcher.is

describe("watch mode on a Sentinel constellation", function()
  local c, w

  setup(function()
    w = watcher.new()
    c = constellation.start{ scripts = false, conf = w.conf }
    -- a window wide enough for a Sentinel slowed by the sanitizer's load to report late
    w:config(string.format("watch = { sentinels = { %q }, dedupe_window = 20 }", c:sentinel_addr(1)))
    w:record("10-record.lua", { "+sdown", "+odown", "+switch-master", "+failover-end", "+slave", "+sentinel" })
    w:start()
  end)

  teardown(function()
    if w then
      pcall(w.stop, w, 60)
      w:cleanup()
    end
    if c then c:stop() end
  end)

  it("is given one Sentinel and discovers the other two", function()
    w:wait_log("connected and subscribed", 3)
    for i = 2, 3 do
      assert.is_true(w:log_count("sentinel " .. c:sentinel_addr(i) .. ": connected and subscribed") == 1)
    end
  end)

  it("runs the handlers of +sdown master, +odown, +switch-master and +failover-end once each", function()
    local old = c:kill_master()
    local new = c:wait_failover(60)
    note("failover %d -> %d", old, new)
    w:wait_handled(is("+failover-end"), 1, 30, "+failover-end")
    w:wait_handled(is("+switch-master"), 1, 30, "+switch-master")
    w:wait_handled(is("+slave"), 1, 30, "+slave")
    procs.sleep(6) -- late reports from the other Sentinels would show up as second runs
    -- what ran and the log, should a count be off (a Sentinel later than the window, or a run twice)
    local json = require("cjson")
    local why = json.encode(w:handled()) .. "\n" .. w:logtext():sub(-4000)
    -- +sdown master: once per time a Sentinel raised it, for each address that went down (the
    -- old master; under load a Sentinel may also see the new one down for a moment). One that
    -- flaps (+sdown, -sdown, +sdown) raised it twice, and twice is right; reports of one
    -- raising by several Sentinels run once.
    local runs = {}
    for _, r in ipairs(w:handled()) do
      if r.name == "+sdown" and r.type == "master" then runs[r.text] = (runs[r.text] or 0) + 1 end
    end
    assert.is_not_nil(runs["master " .. POD .. " 127.0.0.1 " .. old], why)
    for text, n in pairs(runs) do
      local raised = 0
      for i = 1, #c.sentinels do
        raised = math.max(raised, runner_count(c:sentinel_logs(i), "+sdown " .. text .. "\n"))
      end
      assert.are.equal(raised, n, text .. "\n" .. why .. "\n" .. c:sentinel_logs())
    end
    assert.are.equal(1, w:count(is("+odown")), why)
    assert.are.equal(1, w:count(is("+switch-master")), why)
    assert.are.equal(1, w:count(is("+failover-end")), why)
    local known = {}
    for i = 1, #c.sentinels do known[c:sentinel_addr(i)] = true end
    for _, r in ipairs(w:handled()) do
      assert.are.equal("watch", r.source)
      assert.is_true(known[r.sentinel], r.sentinel)
      assert.are.equal(r.sentinel, r.sentinels[1])
      for _, s in ipairs(r.sentinels) do assert.is_true(known[s], s) end
      assert.is_false(r.synthetic)
    end
    local odown = w:handled()
    for _, r in ipairs(odown) do
      if r.name == "+switch-master" then
        assert.are.equal(string.format("%s 127.0.0.1 %d 127.0.0.1 %d", POD, old, new), r.text)
      end
    end
  end)

  it("hears +sentinel when a Sentinel joins, and watches the new one", function()
    local i = c:add_sentinel()
    w:wait_handled(is("+sentinel"), 1, 30, "+sentinel")
    w:wait_log("sentinel " .. c:sentinel_addr(i) .. ": connected and subscribed", 1, 30)
  end)

  it("still hears the others while one Sentinel is down, and resubscribes it when it is back", function()
    c:stop_sentinel(2)
    w:wait_log("sentinel " .. c:sentinel_addr(2) .. ": disconnected", 1)
    local replica = c:replica_port()
    c:kill_node(replica)
    local text = string.format("127.0.0.1:%d", replica)
    w:wait_handled(function(r) return r.name == "+sdown" and r.type == "slave" and r.text:find(text, 1, true) ~= nil end,
      1, 30, "+sdown of the killed replica")
    c:start_sentinel(2)
    c:wait_sentinel(2)
    w:wait_log("sentinel " .. c:sentinel_addr(2) .. ": connected and subscribed", 2, 30)
    c:start_node(replica)
  end)

  it("gives a master that moved while it was stopped one synthetic +switch-master, once across restarts", function()
    -- a replica the forced failover can promote
    procs.wait(function()
      local info = procs.cli(c.master_port, "info", "replication")
      return info:find("state=online", 1, true) ~= nil
    end, 60, "a replica online")
    assert.are.equal(0, w:stop())
    local from = c.master_port
    -- Sentinel refuses (NOGOODSLAVE) until it has seen the replica healthy for a while
    procs.wait(function() return c:sentinel_cli(1, "sentinel", "failover", POD) == "OK" end, 60, "SENTINEL FAILOVER")
    local new = c:wait_failover(60, from)
    note("forced failover %d -> %d while the watcher was stopped", from, new)
    os.remove(w.out)
    w:start()
    w:wait_log("a synthetic +switch-master", 1, 30)
    w:wait_handled(is("+switch-master"), 1, 30)
    procs.sleep(3)
    local sw = {}
    for _, r in ipairs(w:handled()) do
      if r.name == "+switch-master" then sw[#sw + 1] = r end
    end
    assert.are.equal(1, #sw)
    assert.is_true(sw[1].synthetic)
    assert.are.equal(string.format("%s 127.0.0.1 %d 127.0.0.1 %d", POD, from, new), sw[1].text)
    assert.are.equal(0, w:stop())
    local before = w:log_count("connected and subscribed")
    w:start()
    w:wait_log("connected and subscribed", before + #c.sentinels, 30)
    procs.sleep(2)
    assert.are.equal(1, w:count(is("+switch-master")))
    assert.are.equal(1, w:log_count("a synthetic +switch-master"))
  end)
end)

