-- End to end: real redis-sentinel processes (spec/support/constellation.lua)
-- run the built eventilator/reconfigurator with the default rules through
-- real failovers. Each scenario gets its own constellation, rules folder,
-- config, log and metrics store. Timings go to stderr as "[e2e] ..." lines.
-- On a loaded machine a Sentinel may flap, fail over a second time (it sees
-- the freshly promoted master down), or report late: the counts come from
-- what the Sentinels logged (c:did()), taken once nothing more is due
-- (c:settled).
local procs = require("procs")
local constellation = require("constellation")
local json = require("cjson")

local HTTPD = procs.src .. "/spec/support/httpd.py"
local POD = constellation.NAME

local function note(fmt, ...)
  io.stderr:write("[e2e] " .. string.format(fmt, ...) .. "\n")
end

local runner = require("runner")
local function count(text, plain) return runner.count(text, plain, true) end

-- Poll `ok()` every 50 ms; returns the time it became true (procs.wall(), to
-- compare with log lines).
local function wait_until(ok, timeout, what)
  procs.wait(ok, timeout, what)
  return procs.wall()
end

-- The failovers recorded in the store: the "<ip>:<port>" of each member of
-- failovers:<pod>:log ("<ip>:<port>@<time>"), sorted.
local function recorded(S)
  local out = {}
  for m in (S.store("zrange", "failovers:" .. POD .. ":log", "0", "-1") .. "\n"):gmatch("([^\n]+)\n") do
    out[#out + 1] = assert(m:match("^(127%.0%.0%.1:%d+)@%d+$"), m)
  end
  table.sort(out)
  return out
end

-- The same for the replicas the Sentinels promoted (c:did()).
local function promoted(d)
  local out = {}
  for i, p in ipairs(d.promoted) do out[i] = "127.0.0.1:" .. p end
  table.sort(out)
  return out
end

-- ------------------------------------------------------------------ a scenario

-- scenario{ config = "extra lua", rules = { ["name.lua"] = text }, hook = true,
--           start = { constellation opts } }
-- Copies the default rules, writes the config once the store's port is
-- known, starts the HTTP stand-in when asked and then the constellation.
local function scenario(opts)
  local S = { dir = procs.tmpdir() }
  S.rules = S.dir .. "/rules"
  S.log = S.dir .. "/eventilator.log"
  S.conf = S.dir .. "/eventilator.conf"
  S.hook_log = S.dir .. "/hook.jsonl"
  procs.shipped_rules(S.rules)
  os.execute("mkdir -p " .. procs.quote(S.dir .. "/state"))
  for name, text in pairs(opts.rules or {}) do procs.write(S.rules .. "/" .. name, text) end
  if opts.hook then
    S.hook_pid = procs.spawn(string.format("python3 %s 0 --ready %s --log %s", procs.quote(HTTPD),
      procs.quote(S.dir .. "/httpd.ready"), procs.quote(S.hook_log)), S.dir .. "/httpd.out")
    S.hook_port = procs.ready_port(S.hook_pid, S.dir .. "/httpd.ready", "HTTP stand-in", S.dir .. "/httpd.out")
    S.hook_url = string.format("http://127.0.0.1:%d/hook", S.hook_port)
  end
  local start = opts.start or {}
  start.conf = S.conf
  start.setup = function(c)
    procs.write(S.conf, table.concat({
      string.format("log = { target = %q, level = \"debug\" }", S.log),
      string.format("rules_dir = %q", S.rules),
      string.format("state_dir = %q", S.dir .. "/state"),
      string.format("redis = { host = \"127.0.0.1\", port = %d, timeout = 1 }", c.store.port),
      "metrics = { enabled = true }",
      "warnings = { enabled = true }",
      S.hook_url and string.format("e2e = { hook = %q }", S.hook_url) or "",
      ((opts.config or ""):gsub("HOOK_URL", S.hook_url or "")),
    }, "\n") .. "\n")
  end
  local ok, c = pcall(constellation.start, start)
  if not ok then
    procs.halt(S.hook_pid)
    procs.rmtree(S.dir)
    error(c, 0)
  end
  S.c = c

  function S.logtext() return procs.read(S.log) or "" end
  function S.summaries(from) return constellation.summaries(S.logtext():sub((from or 0) + 1)) end
  function S.store(...) return c:store_cli(...) end
  -- The JSON bodies the HTTP stand-in received, decoded.
  function S.posts()
    local out = {}
    for l in (procs.read(S.hook_log) or ""):gmatch("[^\n]+") do
      local req = json.decode(l)
      local okb, body = pcall(json.decode, req.body)
      out[#out + 1] = okb and body or { raw = req.body }
    end
    return out
  end
  function S.stop()
    c:stop()
    procs.halt(S.hook_pid)
    procs.rmtree(S.dir)
  end
  -- Run fn(); on failure print what a reader needs, then fail.
  function S.run(fn)
    local okr, err = xpcall(fn, debug.traceback)
    if not okr then
      local _, raw = c:pending_scripts()
      local pend = {}
      for _, r in ipairs(raw) do pend[#pend + 1] = "sentinel " .. r.sentinel .. ":\n" .. r.text end
      local tail = S.logtext():sub(-6000)
      io.stderr:write("\n[e2e] FAILED; eventilator log tail:\n" .. tail .. "\n[e2e] pending scripts:\n" ..
        table.concat(pend, "\n") .. "\n[e2e] sentinel logs (tail):\n" .. c:sentinel_logs():sub(-4000) .. "\n")
      error(err, 0)
    end
  end
  return S
end

-- The summary lines of `list` for `event` (all when nil).
local function only(list, event)
  local out = {}
  for _, s in ipairs(list) do
    if not event or s.event == event then out[#out + 1] = s end
  end
  return out
end

-- "event xN" counts over summary lines, in first-seen order.
local function tally(list)
  local order, n = {}, {}
  for _, s in ipairs(list) do
    if not n[s.event] then order[#order + 1] = s.event end
    n[s.event] = (n[s.event] or 0) + 1
  end
  for i, e in ipairs(order) do order[i] = e .. " x" .. n[e] end
  return table.concat(order, ", ")
end

local function first(list, event, pred)
  for _, s in ipairs(list) do
    if s.event == event and (not pred or pred(s)) then return s end
  end
end

local function last(list, event)
  local found
  for _, s in ipairs(list) do
    if s.event == event then found = s end
  end
  return found
end

local function no_script_trouble(S)
  local logs = S.c:sentinel_logs()
  assert.falsy(logs:find("-script-error", 1, true), "a sentinel reported -script-error:\n" .. logs:sub(-3000))
  assert.falsy(logs:find("-script-timeout", 1, true), "a sentinel reported -script-timeout")
end

-- After the switch the old master is re-added as a replica; once every
-- sentinel has run the script for its +sdown (when it stays dead) nothing
-- more is due, so PENDING-SCRIPTS can drain for good.
local function wait_old_master_sdown(S, old_port, timeout)
  local mark = "+sdown slave 127.0.0.1:" .. old_port
  procs.wait(function() return count(S.logtext(), "info: " .. mark) >= 3 end, timeout or 20,
    "the three sentinels' " .. mark)
end

describe("eventilator against a live Sentinel constellation", function()
  local S
  after_each(function()
    if S then S.stop() end
    S = nil
  end)

  it("records a real failover once, warnings, and the configured Slack events", function()
    local t_start = procs.now()
    S = scenario{ hook = true, config = [[
      slack = { enabled = true, webhook_url = "HOOK_URL", timeout = 2, trigger_on = { "+odown", "+switch-master" } }
    ]] }
    note("scenario 1: constellation up in %.1f s", procs.now() - t_start)
    S.run(function()
      local c = S.c
      local mark = #S.logtext()
      local old, t_kill = c:kill_master()
      local t_metrics = wait_until(function()
        return tonumber(S.store("zcard", "failovers:" .. POD .. ":log")) >= 1
      end, 40, "the failover in failovers:" .. POD .. ":log")
      c:wait_failover(40, old)
      local t_done = procs.wall()
      wait_old_master_sdown(S, old)
      local drain, raised, text, posts, got = c:settled(function()
        return S.logtext(), S.posts(), recorded(S)
      end, 60)
      local d = c:did(raised)

      -- Recorded once per failover (once, unless the Sentinels failed over twice), by the
      -- leader's call, naming the replica promoted.
      assert.are.same(promoted(d), got)
      assert.are.equal("1", S.store("sismember", "pods-with-failovers", POD))
      assert.are.equal("1", S.store("sismember", "pods-with-warnings", POD))
      assert.is_true(tonumber(S.store("scard", "sentinel:warnings:+odown:" .. POD .. ":timestamps")) >= 1)
      assert.are.equal(d.leaders, count(text, "info: client-reconfig " .. POD .. " leader start"))
      assert.are.equal(d.observers, count(text, "info: client-reconfig " .. POD .. " observer start"))

      -- The Slack stand-in got exactly the trigger_on events: each +switch-master a
      -- sentinel raised (each of the three, per failover), +odown from those that reached it.
      local by = {}
      for _, p in ipairs(posts) do
        local ev = p.attachments and p.attachments[1] and p.attachments[1].fields and p.attachments[1].fields[1]
        local name = ev and ev.value or tostring(p.text):match("^(%S+)")
        by[name] = (by[name] or 0) + 1
      end
      assert.are.equal(d.switches, by["+switch-master"])
      assert.is_true((by["+odown"] or 0) >= 1)
      for name in pairs(by) do assert.is_truthy(name == "+odown" or name == "+switch-master", name) end

      -- Every call ended well; Sentinel saw nothing to retry or report.
      local runs = constellation.summaries(text:sub(mark + 1))
      for _, s in ipairs(runs) do assert.are.equal(0, s.exit, s.line) end
      no_script_trouble(S)

      local sdown = first(runs, "+sdown")
      local try = first(runs, "+try-failover")
      local leader = first(runs, "client-reconfig")
      local switch = last(runs, "+switch-master")
      local ms = 0
      for _, s in ipairs(runs) do ms = ms + s.ms end
      note("scenario 1: kill -> +sdown %.2f s, -> +try-failover %.2f s, -> first client-reconfig %.2f s, " ..
        "-> metrics visible %.2f s, -> last +switch-master %.2f s, -> failover over on all sentinels %.2f s; " ..
        "queue drained %.2f s after",
        sdown.time - t_kill, try.time - t_kill, leader.time - t_kill, t_metrics - t_kill,
        switch.time - t_kill, t_done - t_kill, drain)
      note("scenario 1: %d script runs for the failover (%d client-reconfig), %.1f ms of eventilator in all",
        #runs, #only(runs, "client-reconfig"), ms)
      note("scenario 1: runs by event: %s", tally(runs))
      note("scenario 1: Slack stand-in got +odown x%d, +switch-master x%d", by["+odown"] or 0, by["+switch-master"])
    end)
  end)

  it("records the failover once after the store comes back, with the Slack handler fired once", function()
    -- Sentinel retries here at script-retry-delay 500 ms (below): eventilator is told the same
    S = scenario{ hook = true, config = "script_retry_delay = 0.5", rules = {
      ["50-e2e-slack.lua"] = [[
        -- The leader's reconfig call also posts to Slack; a retry of the call
        -- (the metrics handler failed) must not post again.
        on("client-reconfig", function(ev)
          if ev.role ~= "leader" then return true end
          return require("eventilator.slack").notify(ev, { webhook_url = config.e2e.hook, timeout = 2 })
        end)
      ]],
    } }
    S.run(function()
      local c = S.c
      c:debug("script-retry-delay", 500)
      local mark = #S.logtext()
      c:stop_store()
      local old, t_kill = c:kill_master()
      c:wait_failover(40, old)
      local t_done = procs.wall()
      c:start_store()
      local t_back = procs.wall()
      local t_metrics = wait_until(function()
        return tonumber(S.store("zcard", "failovers:" .. POD .. ":log")) >= 1
      end, 40, "the failover recorded after the store came back")
      wait_old_master_sdown(S, old)
      -- every call and retry done: a late duplicate would be in what this sees
      local drain, raised, text, posts, got = c:settled(function()
        return S.logtext(), S.posts(), recorded(S)
      end, 90)
      local d = c:did(raised)

      local runs = constellation.summaries(text:sub(mark + 1))
      local reconf = only(runs, "client-reconfig")
      local failed = 0
      for _, s in ipairs(reconf) do
        if s.exit ~= 0 then failed = failed + 1 end
      end
      note("scenario 2: store down; kill -> failover over %.2f s; store back at +%.2f s; metrics visible %.2f s " ..
        "after the store came back (+%.2f s after the kill); queue drained %.2f s after",
        t_done - t_kill, t_back - t_kill, t_metrics - t_back, t_metrics - t_kill, drain)
      note("scenario 2: %d client-reconfig runs (%d failed, retried at script-retry-delay 500 ms); " ..
        "Slack posts: %d; %d script runs in all: %s", #reconf, failed, #posts, #runs, tally(runs))

      -- once per failover the Sentinels made (once, unless they failed over twice)
      assert.are.same(promoted(d), got)
      assert.are.equal("1", S.store("sismember", "pods-with-failovers", POD))
      -- The leader's call failed at least once (the store was down) and was
      -- retried by Sentinel until it went through; the observers' calls did
      -- not fail.
      assert.is_true(failed >= 1, "the leader's call never failed: the store was not down in time")
      assert.are.equal(d.leaders + d.observers + failed, #reconf, tally(runs))
      assert.are.equal(0, last(runs, "client-reconfig").exit)
      -- The Slack handler succeeded on the first run of each leader's call: Sentinel's
      -- retries of the same call skip it (per-handler delivery records).
      assert.are.equal(d.leaders, #posts, "Slack posts: " .. #posts .. " for " .. #reconf .. " client-reconfig runs")
      for _, p in ipairs(posts) do assert.matches("client%-reconfig", json.encode(p)) end
      no_script_trouble(S)
    end)
  end)

  it("stops a handler that hangs past the budget before Sentinel would kill the script", function()
    S = scenario{ config = "budget = 3", rules = {
      ["05-hang.lua"] = 'on("+sdown", function() while true do end end)\n',
    } }
    S.run(function()
      local c = S.c
      local mark = #S.logtext()
      local t_kill = c:kill_node(c:replica_port())
      procs.wait(function() return #only(S.summaries(mark), "+sdown") >= 3 end, 30, "three +sdown calls to end")
      local t_end = procs.wall()
      local sd = only(S.summaries(mark), "+sdown")
      local text = S.logtext()
      assert.matches("rule [^ ]*/05%-hang%.lua:1 failed: [^\n]*stopped: time budget exceeded", text)
      local max = 0
      for _, s in ipairs(sd) do
        assert.are.equal(1, s.exit, s.line)
        assert.is_true(s.ms < 3000 + 1500, "call took " .. s.ms .. " ms with budget = 3")
        if s.ms > max then max = s.ms end
      end
      -- The handlers after the hung one still ran.
      assert.are.equal("1", S.store("sismember", "pods-with-warnings", POD))
      assert.falsy(c:sentinel_logs():find("-script-timeout", 1, true))
      -- Sentinel has the calls queued for a retry (exit 1), not killed.
      local pending = c:pending_scripts()
      note("scenario 3: budget 3 s: %d +sdown calls ended with exit=1, longest %.0f ms; last ended %.2f s " ..
        "after the kill; %d jobs queued for retry by Sentinel", #sd, max, t_end - t_kill, pending)
    end)
  end)

  it("runs the good rules beside a broken rule file and names its file:line", function()
    S = scenario{ rules = {
      ["15-broken.lua"] = '-- a typo\non("+sdown", function(ev)\n  log.info("never" ev.name)\nend)\n',
    } }
    S.run(function()
      local c = S.c
      local mark = #S.logtext()
      local port = c:replica_port()
      c:kill_node(port)
      procs.wait(function() return #only(S.summaries(mark), "+sdown") >= 3 end, 30, "three +sdown calls")
      local text = S.logtext():sub(mark + 1)
      assert.matches("rule file skipped: [^ \n]*/15%-broken%.lua:3:", text)
      assert.is_truthy(text:find("info: +sdown slave 127.0.0.1:" .. port, 1, true), "00-log ran")
      assert.are.equal("1", S.store("sismember", "pods-with-warnings", POD))
      assert.is_true(tonumber(S.store("scard", "sentinel:warnings:+sdown:" .. POD .. ":timestamps")) >= 1)
      for _, s in ipairs(only(S.summaries(mark), "+sdown")) do
        assert.are.equal(1, s.rule_files_failed, s.line)
        assert.are.equal(0, s.failed, s.line)
        assert.is_true(s.handlers >= 2, s.line)
      end
    end)
  end)

  it("records a forced SENTINEL FAILOVER once, by the leader", function()
    S = scenario{}
    S.run(function()
      local c = S.c
      local mark = #S.logtext()
      local old = c.master_port
      local t0 = procs.wall()
      assert.are.equal("OK", c:sentinel_cli(2, "sentinel", "failover", POD))
      local t_metrics = wait_until(function()
        return tonumber(S.store("zcard", "failovers:" .. POD .. ":log")) >= 1
      end, 40, "the forced failover in the metrics")
      c:wait_failover(40, old)
      local t_done = procs.wall()
      -- The old master is alive: it is turned into a replica.
      procs.wait(function()
        return c:sentinel_cli(1, "sentinel", "replicas", POD):find("127.0.0.1:" .. old, 1, true) ~= nil
      end, 20, "the old master listed as a replica")
      local drain, raised, all, got = c:settled(function() return S.logtext(), recorded(S) end, 60)
      local d = c:did(raised)

      -- once per failover (once, unless a loaded Sentinel saw the new master down and failed over again)
      assert.are.same(promoted(d), got)
      local text = all:sub(mark + 1)
      assert.are.equal(d.leaders, count(text, "info: client-reconfig " .. POD .. " leader start"))
      assert.are.equal(d.observers, count(text, "info: client-reconfig " .. POD .. " observer start"))
      local runs = constellation.summaries(text)
      for _, s in ipairs(runs) do assert.are.equal(0, s.exit, s.line) end
      no_script_trouble(S)
      local leader = first(runs, "client-reconfig")
      local fend = first(runs, "+failover-end")
      local switch = last(runs, "+switch-master")
      note("scenario 5: SENTINEL FAILOVER -> leader's client-reconfig %.2f s, metrics visible %.2f s, " ..
        "+failover-end %.2f s, last +switch-master %.2f s, failover over on all sentinels %.2f s; " ..
        "queue drained %.2f s after", leader.time - t0, t_metrics - t0, fend.time - t0, switch.time - t0,
        t_done - t0, drain)
      note("scenario 5: %d script runs: %s", #runs, tally(runs))
    end)
  end)
end)
