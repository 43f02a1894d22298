-- Delivery records: Sentinel's retry of a failed call (same Sentinel
-- process, same argv) skips the handlers that already succeeded.
local runner = require("runner")
local procs = require("procs")

describe("retries", function()
  local ctx
  before_each(function()
    ctx = runner.new()
    -- each "call" after the first stands in for Sentinel's retry, which comes script-retry-delay later
    ctx:config(string.format("state_dir = %q\nscript_retry_delay = 0", ctx.dir .. "/state"))
    ctx:rule("a.lua", string.format([[
      on("+sdown", function() log.info("A fired") end)
      on("+sdown", function()
        local f = io.open(%q)
        if not f then return nil, "flag missing" end
        f:close()
        log.info("B fired")
      end)
      on("+sdown", function() log.info("C fired") end)
    ]], ctx.dir .. "/flag"))
  end)
  after_each(function() ctx:cleanup() end)

  local function calls(steps) return ctx:calls(steps) end
  local count = runner.count

  it("runs only the failed handler on retry, and forgets the call once all succeeded", function()
    local rcs = calls({ "call", "call", "touch " .. procs.quote(ctx.dir .. "/flag"), "call", "call" })
    assert.are.same({ 1, 1, 0, 0 }, rcs)
    local log = ctx:logtext()
    -- A and C: once for the first call, once for the fourth (a new call, record gone)
    assert.are.equal(2, count(log, "A fired"))
    assert.are.equal(2, count(log, "C fired"))
    assert.are.equal(2, count(log, "B fired"))
    assert.are.equal(2, count(log, "retry of an earlier call by Sentinel pid %d+: 2 handler%(s%) already succeeded"))
    assert.matches("retry=yes", log)
    assert.are.equal("", (procs.sh("ls " .. procs.quote(ctx.dir .. "/state/retries"))))
  end)

  it("does not take another Sentinel's call for a retry", function()
    assert.are.same({ 1 }, calls({ "call" }))
    assert.are.same({ 1 }, calls({ "call" })) -- another parent process
    assert.are.equal(2, count(ctx:logtext(), "A fired"))
  end)

  it("treats a record older than the retry window as a new call", function()
    assert.are.same({ 1, 1 }, calls({ "call",
      "touch -d '6 hours ago' " .. procs.quote(ctx.dir) .. "/state/retries/*", "call" }))
    assert.are.equal(2, count(ctx:logtext(), "A fired"))
  end)

  it("runs every handler and says why when the state folder can't be written", function()
    -- under a file, so that even root can't create it (chmod does not stop root)
    ctx:config(string.format("state_dir = %q", "/dev/null/eventilator-state"))
    local rcs = calls({ "call", "call" })
    assert.are.same({ 1, 1 }, rcs)
    local log = ctx:logtext()
    assert.are.equal(2, count(log, "cannot keep the delivery record %(/dev/null/eventilator%-state: Not a directory%)"))
    assert.are.equal(2, count(log, "A fired"))
    assert.are.equal(2, count(log, "C fired"))
  end)

  it("names a fix that cannot harm when the state folder is another user's", function()
    -- Sentinel's user owns state_dir; an operator runs the call by hand as root (the specs run as root)
    os.execute("mkdir -p " .. procs.quote(ctx.dir .. "/state") .. " && chown nobody " .. procs.quote(ctx.dir .. "/state"))
    assert.are.same({ 1 }, calls({ "call" }))
    local log = ctx:logtext()
    assert.matches("cannot keep the delivery record %([^\n]*/state belongs to nobody, and this call runs as root: " ..
      "run it as the Sentinel's user %(sudo %-u nobody %.%.%.%)%)", log)
    assert.is_nil(log:find("chown", 1, true))
  end)

  it("keeps two Sentinels' records apart when both call at once", function()
    local bin = procs.quote(procs.build .. "/bin/eventilator")
    local one = "EVENTILATOR_CONF=" .. procs.quote(ctx.conf) .. " " .. bin ..
      " +sdown 'master pod1 127.0.0.1 6379' 2>/dev/null"
    -- two parents (two Sentinels), each making a call and its retry, at the same time
    -- (`; true` keeps the shell from exec'ing the last call, which would change its parent)
    local twice = procs.quote(one .. "; " .. one .. "; true")
    local script = string.format("(sh -c %s) & (sh -c %s) & wait", twice, twice)
    procs.sh("sh -c " .. procs.quote(script))
    local log = ctx:logtext()
    assert.are.equal(2, count(log, "A fired"), log)  -- once per Sentinel
    assert.are.equal(2, count(log, "retry of an earlier call"), log)
    local records = 0
    for _ in procs.sh("ls " .. procs.quote(ctx.dir .. "/state/retries")):gmatch("%S+") do records = records + 1 end
    assert.are.equal(2, records)
  end)

  it("keeps every record when three Sentinels make their first calls at once on a fresh state_dir", function()
    local bin = procs.quote(procs.build .. "/bin/eventilator")
    for trial = 1, 50 do
      -- a state_dir nobody has made yet: the first calls race to make it and retries/ in it
      ctx:config(string.format("state_dir = %q\nscript_retry_delay = 0", ctx.dir .. "/state-" .. trial))
      local one = "EVENTILATOR_CONF=" .. procs.quote(ctx.conf) .. " " .. bin ..
        " +sdown 'master pod1 127.0.0.1 6379' 2>/dev/null"
      local twice = procs.quote(one .. "; " .. one .. "; true") -- a call and its retry, from one parent
      procs.sh("sh -c " .. procs.quote(string.format("(sh -c %s) & (sh -c %s) & (sh -c %s) & wait",
        twice, twice, twice)))
    end
    local log = ctx:logtext()
    assert.are.equal(0, count(log, "cannot keep the delivery record"), log)
    assert.are.equal(150, count(log, "A fired"), log) -- once per Sentinel and trial: never again on retry
    assert.are.equal(150, count(log, "retry of an earlier call"), log)
  end)

  it("keeps what succeeded when the watchdog ends a stuck call", function()
    ctx:config(string.format("state_dir = %q\nbudget = 1\nscript_retry_delay = 0", ctx.dir .. "/state"))
    ctx:rule("a.lua", string.format([[
      on("+sdown", function() log.info("A fired") end)
      on("+sdown", function()
        if io.open(%q) then log.info("B fired") return true end
        while true do pcall(function() while true do end end) end
      end)
    ]], ctx.dir .. "/flag"))
    local rcs = calls({ "call", "touch " .. procs.quote(ctx.dir .. "/flag"), "call" })
    assert.are.same({ 1, 0 }, rcs)
    local log = ctx:logtext()
    assert.matches("stopped by the watchdog", log)
    assert.are.equal(1, count(log, "A fired"))
    assert.are.equal(1, count(log, "B fired"))
  end)

  it("takes an identical call sooner than script_retry_delay after a failure for a new event", function()
    ctx:config(string.format("state_dir = %q", ctx.dir .. "/state")) -- Sentinel's default, 30 s
    -- sixteen identical calls from one Sentinel, one after another, each failing handler B
    local steps = {}
    for i = 1, 16 do steps[i] = "call" end
    assert.are.same({ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, calls(steps))
    local log = ctx:logtext()
    assert.are.equal(16, count(log, "A fired"), log)
    assert.are.equal(16, count(log, "C fired"), log)
    assert.are.equal(0, count(log, "retry of an earlier call"), log)
    local records = 0
    for _ in procs.sh("ls " .. procs.quote(ctx.dir .. "/state/retries")):gmatch("%S+") do records = records + 1 end
    assert.are.equal(16, records) -- one for each call's own retry
  end)

  it("takes a call script_retry_delay after the failed one ended for its retry", function()
    ctx:config(string.format("state_dir = %q\nscript_retry_delay = 0.5", ctx.dir .. "/state"))
    -- the pause is the retry delay itself passing, as Sentinel waits it out
    local rcs = calls({ "call", "call", "sleep 0.6", "call" })
    assert.are.same({ 1, 1, 1 }, rcs)
    local log = ctx:logtext()
    assert.are.equal(2, count(log, "A fired"), log) -- the first two calls; the third is a retry
    assert.are.equal(1, count(log, "retry of an earlier call by Sentinel pid %d+: 2 handler%(s%) already succeeded"), log)
  end)

  it("shows in `eventilator test` whether a call would be a retry", function()
    calls({ "call" })
    local _, _, out = ctx:run("eventilator", "test", "+sdown", "master pod1 127.0.0.1 6379")
    assert.matches("retry record [^\n]* %(Sentinel pid %d+%): a retry from that Sentinel skips:\n  [^\n]*a%.lua:1\n  [^\n]*a%.lua:8", out)
    _, _, out = ctx:run("eventilator", "test", "+sdown", "master pod2 127.0.0.1 6379")
    assert.matches("no retry record", out)
  end)
end)
