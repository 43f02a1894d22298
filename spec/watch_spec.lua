-- Watch mode (`eventilator watch`, docs/watch.md) against real peers, part 1 of 3:
-- a Sentinel constellation on loopback (spec/support/constellation.lua, no
-- scripts configured). Parts 2 and 3: watch_local_spec.lua, watch_scale_spec.lua.
-- Handlers record what they saw (spec/support/watcher.lua). Nothing here asserts a duration.
local procs = require("procs")
local constellation = require("constellation")
local watcher = require("watcher")

local POD = constellation.NAME

local note = watcher.note

local is = watcher.is

describe("watch mode on a Sentinel constellation", function()
  local c, w

  setup(function()
    w = watcher.new()
    c = constellation.start{ scripts = false, conf = w.conf }
    -- a window wide enough for a Sentinel slowed by the sanitizer's load to report late
    w:config(string.format("watch = { sentinels = { %q }, dedupe_window = 20 }", c:sentinel_addr(1)))
    -- +set: the marks the Sentinels raise on demand (settle, below)
    w:record("10-record.lua", { "+sdown", "+odown", "+switch-master", "+failover-end", "+slave", "+sentinel", "+set" })
    w:start()
  end)

  teardown(function()
    if w then
      w:finish(60)
    end
    if c then c:stop() end
  end)

  it("is given one Sentinel and discovers the other two", function()
    w:wait_log("connected and subscribed", 3)
    for i = 2, 3 do
      assert.is_true(w:log_count("sentinel " .. c:sentinel_addr(i) .. ": connected and subscribed") == 1)
    end
  end)

  -- Until the watcher has heard all that each Sentinel raised before a +set
  -- mark it raises now (one Sentinel's messages arrive in order) and has run
  -- it all; again while a Sentinel raised one of `names` after its mark.
  -- Returns what the Sentinels raised before their marks (c:raised's list),
  -- and what the watcher had run (w:handled()), read before their logs: so
  -- nothing it ran can come from a raise the list leaves out.
  local marks = 0
  local function settle(names)
    for _ = 1, 20 do
      local mark = {}
      for i, s in ipairs(c.sentinels) do
        if s.up then
          marks = marks + 1
          mark[i] = c:mark(i, "mark" .. marks)
        end
      end
      for i, text in pairs(mark) do
        w:wait_handled(function(r) return r.name == "+set" and r.text == text end, 1, 60, "sentinel " .. i .. "'s mark")
      end
      w:settle(60)
      local handled = w:handled()
      local before, later = {}, {}
      for i in pairs(mark) do
        local past = false
        for _, e in ipairs(c:raised(nil, i)) do
          if e.name == "+set" and e.text == mark[i] then
            past = true
          elseif past then
            if names[e.name] then later[#later + 1] = e.name .. " " .. e.text end
          else
            before[#before + 1] = e
          end
        end
      end
      if #later == 0 then
        table.sort(before, function(x, y)
          if x.t ~= y.t then return x.t < y.t end
          return x.sentinel < y.sentinel or (x.sentinel == y.sentinel and x.n < y.n)
        end)
        return before, handled
      end
      note("raised after the marks, once more: %s", table.concat(later, "; "))
    end
    error("the Sentinels never stopped raising events")
  end

  it("runs the handlers of +sdown master, +odown, +switch-master and +failover-end once per time the Sentinels raised them", function()
    local old = c:kill_master()
    local new = c:wait_failover(60)
    note("failover %d -> %d", old, new)
    w:wait_handled(is("+failover-end"), 1, 30, "+failover-end")
    w:wait_handled(is("+switch-master"), 1, 30, "+switch-master")
    w:wait_handled(is("+slave"), 1, 30, "+slave")
    -- Everything the Sentinels raised, heard and run: a loaded Sentinel may flap (+sdown,
    -- -sdown, +sdown: raised twice, and twice is right), see the freshly promoted master down
    -- and fail over a second time, or report late. Reports of one raising by several
    -- Sentinels run once (docs/watch.md's dedupe, window 20 s).
    local counted = { ["+sdown"] = true, ["+odown"] = true, ["+switch-master"] = true, ["+failover-end"] = true }
    local raised, handled = settle(counted)
    local master = {}
    for _, e in ipairs(raised) do
      if counted[e.name] and (e.name == "+switch-master" or e.text:match("^master ")) then master[#master + 1] = e end
    end
    local owed = watcher.owed(master, 20)
    -- what ran and the log, should a count be off (a Sentinel later than the window, or a run twice)
    local json = require("cjson")
    local why = json.encode(handled) .. "\n" .. w:logtext():sub(-4000) .. "\n" .. c:sentinel_logs()
    local ran = {}
    for _, r in ipairs(handled) do
      if counted[r.name] and (r.name == "+switch-master" or r.type == "master") then
        local k = watcher.key(r.name, r.text)
        ran[k] = (ran[k] or 0) + 1
      end
    end
    assert.is_not_nil(ran["+sdown master " .. POD .. " 127.0.0.1 " .. old], why)
    -- away from the master killed (to `new`, or, when the Sentinels failed over twice, to the
    -- replica that `new` took over from)
    local away = false
    for k in pairs(ran) do
      away = away or k:find(string.format("+switch-master %s 127.0.0.1 %d 127.0.0.1 ", POD, old), 1, true) == 1
    end
    assert.is_true(away, why)
    for k, n in pairs(owed) do
      local got = ran[k] or 0
      assert.is_true(got >= n[1] and got <= n[2],
        string.format("%s: ran %d times, raised for %d to %d runs\n%s", k, got, n[1], n[2], why))
    end
    for k in pairs(ran) do assert.is_not_nil(owed[k], k .. ": ran, never raised\n" .. why) end
    local known = {}
    for i = 1, #c.sentinels do known[c:sentinel_addr(i)] = true end
    for _, r in ipairs(handled) do
      assert.are.equal("watch", r.source)
      assert.is_true(known[r.sentinel], r.sentinel)
      assert.are.equal(r.sentinel, r.sentinels[1])
      for _, s in ipairs(r.sentinels) do assert.is_true(known[s], s) end
      assert.is_false(r.synthetic)
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
    local earlier = #c:did().promoted
    -- Sentinel refuses (NOGOODSLAVE) until it has seen the replica healthy for a while
    procs.wait(function() return c:sentinel_cli(1, "sentinel", "failover", POD) == "OK" end, 60, "SENTINEL FAILOVER")
    local new = c:wait_failover(60, from)
    note("forced failover %d -> %d while the watcher was stopped", from, new)
    os.remove(w.out)
    local before_start = w:log_count("connected and subscribed")
    w:start()
    w:wait_log("a synthetic +switch-master", 1, 30)
    w:wait_handled(is("+switch-master"), 1, 30)
    -- every Sentinel reconciled (right after its subscription), and what that queued and what
    -- the Sentinels raised meanwhile has run
    w:wait_log("connected and subscribed", before_start + #c.sentinels, 30)
    local raised, handled = settle({ ["+switch-master"] = true })
    local why = require("cjson").encode(handled) .. "\n" .. w:logtext():sub(-4000) .. "\n" .. c:sentinel_logs()
    -- One synthetic +switch-master: from the master it knew to the one the Sentinels named when
    -- it reconciled, `new` or (a loaded Sentinel may fail over again) one promoted after it.
    local since = {}
    for i, p in ipairs(c:did(raised).promoted) do
      if i > earlier then since[p] = true end
    end
    local synthetic, real = {}, {}
    for _, r in ipairs(handled) do
      if r.name == "+switch-master" then
        if r.synthetic then synthetic[#synthetic + 1] = r else real[#real + 1] = r end
      end
    end
    assert.are.equal(1, #synthetic, why)
    local to = tonumber(synthetic[1].text:match(string.format("^%s 127%%.0%%.0%%.1 %d 127%%.0%%.0%%.1 (%%d+)$", POD, from)))
    assert.is_true(to == new or since[to] == true, why)
    -- A real one only for a move after that (never the same move again): what a Sentinel raised.
    local function moves(list)
      local t, n = {}, 0
      for _, e in ipairs(list) do
        if e.name == "+switch-master" then t[e.text], n = true, n + 1 end
      end
      return t, n
    end
    local moved, nmoved = moves(raised)
    for _, r in ipairs(real) do
      assert.is_true(moved[r.text] == true, why)
      assert.is_nil(r.text:find(string.format("%s 127.0.0.1 %d ", POD, from), 1, true), why)
    end
    -- Restarted again: nothing moved meanwhile, so nothing runs (no second synthetic one).
    assert.are.equal(0, w:stop())
    local before = w:log_count("connected and subscribed")
    w:start()
    w:wait_log("connected and subscribed", before + #c.sentinels, 30)
    local raised2, handled2 = settle({ ["+switch-master"] = true })
    local _, nmoved2 = moves(raised2)
    local runs = 0
    for _, r in ipairs(handled2) do
      if r.name == "+switch-master" then runs = runs + 1 end
    end
    if nmoved2 == nmoved then
      assert.are.equal(#synthetic + #real, runs, why)
      assert.are.equal(1, w:log_count("a synthetic +switch-master"), why)
    else
      note("the Sentinels moved the master again meanwhile: %d +switch-master raised", nmoved2 - nmoved)
    end
  end)
end)

