-- Cluster mode keeps a master's events in order (docs/cluster.md, "Order"):
-- three workers, a watcher, a private store and a redis-server the spec
-- PUBLISHes on as if it were a Sentinel. The rule's handler appends
-- "start|end <worker pid> <master> <description>" to one file (O_APPEND: the
-- lines' order is the order the runs started and ended in), and takes a
-- while (BLPOP on the store), so that one worker's run of a master's event
-- is still going when the others read that master's next events.
--
-- 1. A burst: eight events of master alpha (+switch-master, and a replica's
--    +sdown "... @ alpha ...") interleaved with eight events of eight other
--    masters. Alpha's runs never overlap and follow the stream's order; the
--    others ran beside them: alpha's first run waits until another
--    master's run has started (it would wait in vain if the workers ran one
--    master at a time), and other masters' runs start between an alpha
--    run's start and end.
-- 2. The worker inside an alpha run is killed (SIGKILL): alpha's later
--    events wait for the takeover (claim_after) and then run, in order.
-- 3. An alpha event whose handler fails is retried, then set aside; the
--    events after it run then, in order: a failing event holds its master
--    no longer than the dead-letter rule.
--
-- Each wait is for a condition (procs.wait, on the monotonic clock); no
-- sleep stands in for "nothing more happens".
local procs = require("procs")
local cl = require("cluster")

local CLAIM_AFTER = 2

describe("cluster mode: one master's events one at a time, in stream order, across workers", function()
  local store, fake, dir
  local watchers, workers = {}, {}

  local function config()
    return string.format([[
redis = { port = %d }
watch = { sentinels = { "127.0.0.1:%d" } }
cluster = { claim_after = %d, max_deliveries = 2 }
budget = 20
]], store.port, fake.port, CLAIM_AFTER)
  end

  -- The rule: every +switch-master and +sdown. Alpha's first run (the one that renames <dir>/gate)
  -- waits up to 20 s for another master's run to start (<dir>/other); a run that renames <dir>/hold
  -- stays inside until it is killed; a description with "failing" fails.
  local function rule()
    return cl.rule_prelude .. string.format([[
local function out(text) line(%q, text) end
local function pause(c, s) c:call("BLPOP", "spec:never", s) end
on({ "+switch-master", "+sdown" }, function(ev)
  local master, pid = ev.master.name, worker_pid()
  local tag = pid .. " " .. master .. " " .. ev.text
  out("start " .. tag)
  local c = assert(redis.connect())
  if master ~= "alpha" then
    local f = io.open(%q, "w")
    if f then f:close() end
    pause(c, 0.1)
  elseif os.rename(%q, %q) then
    local t0 = os.time()
    while not io.open(%q) and os.time() - t0 < 20 do pause(c, 0.02) end
    out((io.open(%q) and "gate open " or "gate shut ") .. tag)
  elseif os.rename(%q, %q) then
    out("held " .. tag)
    while true do pause(c, 0.05) end -- until the spec kills this worker
  else
    pause(c, 0.15)
  end
  c:close()
  if ev.text:find("failing", 1, true) then
    out("failed " .. tag)
    return nil, "failing on purpose"
  end
  out("end " .. tag)
  return true
end)
]], dir .. "/runs", dir .. "/other", dir .. "/gate", dir .. "/gate.taken", dir .. "/other", dir .. "/other",
      dir .. "/hold", dir .. "/hold.taken")
  end

  local function publish(name, text) return procs.cli(fake.port, "publish", name, text) end
  local function settled()
    local lag, pending = cl.backlog(store.port)
    return lag == 0 and pending == 0
  end

  -- The lines of <dir>/runs: { what, pid, master, text } each, in file order.
  local function runs()
    local out = {}
    for l in (procs.read(dir .. "/runs") or ""):gmatch("[^\n]+") do
      local what, rest = l:match("^(gate %a+) (.*)$")
      if not what then what, rest = l:match("^(%a+) (.*)$") end
      local pid, master, text = rest:match("^(%d+) (%S+) (.*)$")
      out[#out + 1] = { what = what, pid = tonumber(pid), master = master, text = text }
    end
    return out
  end

  local function ended(text)
    for _, r in ipairs(runs()) do
      if r.what == "end" and r.text == text then return true end
    end
    return false
  end

  -- The stream's entries of master m, in stream order: their descriptions, and whether each names
  -- its master (the field `master`).
  local function stream_of(m)
    local out = procs.cli(store.port, "xrange", "eventilator:events", "-", "+")
    local list, cur = {}, nil
    local lines = {}
    for l in (out .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    local i = 1
    while i <= #lines do
      if lines[i]:match("^%d+%-%d+$") then
        cur = { id = lines[i] }
        list[#list + 1] = cur
        i = i + 1
      else
        if cur then cur[lines[i]] = lines[i + 1] end
        i = i + 2
      end
    end
    local texts, named = {}, true
    for _, e in ipairs(list) do
      local name = e.text and (e.name == "+switch-master" and e.text:match("^(%S+)") or e.text:match("@ (%S+)"))
      if name == m then
        texts[#texts + 1] = e.text
        named = named and e.master == m
      end
    end
    return texts, named
  end

  -- Alpha's runs in the file: each start followed by its own end (or failed, or, for a killed
  -- run, nothing but the next start of the same event) before any other alpha start; returns the
  -- descriptions in the order their runs ended.
  local function serial(list, m)
    local open, done = nil, {}
    for n, r in ipairs(list) do
      if r.master == m then
        if r.what == "start" then
          assert.is_true(open == nil or open.what == "held",
            string.format("line %d: %s started while %s still ran", n, r.text, open and open.text))
          if open and open.what == "held" then
            assert.are.equal(open.text, r.text, "the event after a killed run is the same one again")
          end
          open = r
        elseif r.what == "held" then
          open = r
        elseif r.what == "end" or r.what == "failed" then
          assert.are.equal(open and open.text, r.text, string.format("line %d", n))
          if r.what == "end" then done[#done + 1] = r.text end
          open = nil
        end
      end
    end
    return done
  end

  setup(function()
    store = procs.start_redis()
    fake = procs.start_redis()
    dir = procs.tmpdir()
    watchers[1] = cl.watcher(config(), rule())
    for i = 1, 3 do workers[i] = cl.worker(config(), rule()) end
  end)

  teardown(function()
    cl.cleanup(watchers)
    cl.cleanup(workers)
    if fake then fake.stop() end
    if store then store.stop() end
    procs.rmtree(dir)
  end)

  it("a burst: alpha's runs never overlap and keep the stream's order; other masters run beside them", function()
    procs.write(dir .. "/gate", "")
    local alpha = {}
    for k = 1, 8 do
      if k % 3 == 0 then
        alpha[k] = string.format("slave 127.0.0.1:%d 127.0.0.1 %d @ alpha 127.0.0.1 %d", 7000 + k, 7000 + k, 6000 + k)
        publish("+sdown", alpha[k])
      else
        alpha[k] = string.format("alpha 127.0.0.1 %d 127.0.0.1 %d", 6000 + k - 1, 6000 + k)
        publish("+switch-master", alpha[k])
      end
      publish("+switch-master", string.format("beta%d 127.0.0.1 %d 127.0.0.1 %d", k, 6100 + k, 6200 + k))
    end
    procs.wait(function()
      for _, t in ipairs(alpha) do if not ended(t) then return false end end
      for k = 1, 8 do
        if not ended(string.format("beta%d 127.0.0.1 %d 127.0.0.1 %d", k, 6100 + k, 6200 + k)) then return false end
      end
      return settled()
    end, 90, "the 16 events to run")
    local order, named = stream_of("alpha")
    assert.are.equal(8, #order)
    local list = runs()
    assert.are.same(order, serial(list, "alpha"))
    assert.is_true(named, "each alpha entry names its master")
    -- parallel still: the gate saw another master's run start while alpha's first run waited
    local gate, beside, inside = nil, 0, false
    for _, r in ipairs(list) do
      if r.what:find("^gate") then gate = r.what end
      if r.master == "alpha" and r.what == "start" then inside = true end
      if r.master == "alpha" and r.what == "end" then inside = false end
      if inside and r.master ~= "alpha" and r.what == "start" then beside = beside + 1 end
    end
    assert.are.equal("gate open", gate)
    assert.is_true(beside >= 1, "another master's run started inside an alpha run")
    local pids = {}
    for _, r in ipairs(list) do pids[r.pid] = true end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 2, "runs on more than one worker")
  end)

  it("the worker inside an alpha run is killed: alpha's later events wait for the takeover, then run in order",
    function()
    procs.write(dir .. "/hold", "")
    local before = #runs()
    local alpha = {}
    for k = 11, 14 do
      alpha[#alpha + 1] = string.format("alpha 127.0.0.1 %d 127.0.0.1 %d", 6000 + k - 1, 6000 + k)
      publish("+switch-master", alpha[#alpha])
    end
    local held
    procs.wait(function()
      for _, r in ipairs(runs()) do
        if r.what == "held" then held = r end
      end
      return held ~= nil
    end, 30, "a worker inside the held run")
    assert.are.equal(alpha[1], held.text)
    procs.kill(held.pid, "KILL")
    procs.wait(function()
      for _, t in ipairs(alpha) do if not ended(t) then return false end end
      return settled()
    end, 60, "alpha's four events to run after the takeover")
    local list = table.move(runs(), before + 1, #runs(), 1, {})
    assert.are.same(alpha, serial(list, "alpha"))
    local taken = 0
    for _, w in ipairs(workers) do taken = taken + w:log_count("took over entry") end
    assert.is_true(taken >= 1, "a worker took the killed worker's entry over")
  end)

  it("a failing alpha event is retried, then set aside; the events after it run then, in order", function()
    local before = #runs()
    local alpha = {}
    for k = 21, 23 do
      alpha[#alpha + 1] = string.format("slave 127.0.0.1:%d 127.0.0.1 %d @ alpha 127.0.0.1 %d", 7000 + k, 7000 + k,
        6000 + k)
    end
    alpha[1] = alpha[1]:gsub("^slave 127.0.0.1:7021", "slave failing:7021")
    for _, t in ipairs(alpha) do publish("+sdown", t) end
    procs.wait(function()
      return ended(alpha[2]) and ended(alpha[3]) and settled()
    end, 60, "the events after the failing one to run")
    assert.are.equal("1", procs.cli(store.port, "xlen", "eventilator:events:dead"))
    local list = table.move(runs(), before + 1, #runs(), 1, {})
    assert.are.same({ alpha[2], alpha[3] }, serial(list, "alpha"))
    local failed = 0
    for _, r in ipairs(list) do
      if r.what == "failed" then
        failed = failed + 1
        assert.are.equal(alpha[1], r.text)
      end
    end
    assert.are.equal(2, failed) -- max_deliveries
    -- the set-aside entry's runs both came before the next alpha start
    local last_failed, first_next
    for n, r in ipairs(list) do
      if r.what == "failed" then last_failed = n end
      if r.what == "start" and r.text == alpha[2] and not first_next then first_next = n end
    end
    assert.is_true(last_failed < first_next)
  end)

  it("stops cleanly: the watcher and the workers left exit 0 on SIGTERM", function()
    cl.stop_all({ watchers, workers })
  end)
end)
