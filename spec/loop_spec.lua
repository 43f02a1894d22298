-- Record, replay, rule specs (contract section 14): `record` on real calls
-- of the built binary (the failover: loop_failover_spec.lua), `test --replay`
-- of such files, of the shared corpus and of broken files, and `test --spec`
-- on the shipped rule specs, passing and (with a rule broken on purpose)
-- failing with a readable diff.
local procs = require("procs")
local runner = require("runner")
local json = require("cjson")

local CORPUS = procs.shared .. "/sentinel/corpus-failover.jsonl"

local function lines_of(text)
  local t = {}
  for l in (text or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- The built binary with EVENTILATOR_CONF and the source tree's shipped Lua
-- (for test --spec); returns stdout, exit code, stderr.
local function eventilator(ctx, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = procs.quote(a) end
  local out, rc = procs.sh(string.format("cd %s && EVENTILATOR_CONF=%s EVENTILATOR_LUA_DIR=%s %s/bin/eventilator %s 2>%s",
    procs.quote(procs.src), procs.quote(ctx.conf), procs.quote(procs.src .. "/lua"), procs.quote(procs.build),
    table.concat(args, " "), procs.quote(ctx.dir .. "/cli.err")))
  return out, rc, procs.read(ctx.dir .. "/cli.err") or ""
end

describe("record", function()
  local ctx
  before_each(function()
    ctx = runner.new()
    ctx:config(string.format("record = %q", ctx.dir .. "/calls.jsonl"))
  end)
  after_each(function() ctx:cleanup() end)

  it("is on by default, in state_dir, and off with record = false", function()
    ctx:config("")
    assert.equal(0, (ctx:run("eventilator", "+sdown", "master pod1 10.0.0.1 6379")))
    local ls = lines_of(procs.read(ctx.dir .. "/state/calls.jsonl"))
    assert.equal(1, #ls)
    assert.same({ "+sdown", "master pod1 10.0.0.1 6379" }, json.decode(ls[1]).args)
    ctx:config("record = false")
    assert.equal(0, (ctx:run("eventilator", "+sdown", "master pod1 10.0.0.1 6379")))
    assert.equal(1, #lines_of(procs.read(ctx.dir .. "/state/calls.jsonl")))
    ctx:config("record = true")
    local rc, log = ctx:run("eventilator", "check")
    assert.equal(1, rc, log)
  end)

  it("keeps what each handler did, and marks Sentinel's retry", function()
    ctx:config(string.format("record = %q\nscript_retry_delay = 0", ctx.dir .. "/calls.jsonl"))
    ctx:rule("10-a.lua", table.concat({
      'on("+odown", function() return true end)',
      'on("+odown", function() return nil, "store \\"down\\"" end)',
    }, "\n") .. "\n")
    local rcs = ctx:calls({ "call", "call" }, { "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2" })
    assert.same({ 1, 1 }, rcs)
    local ls = lines_of(procs.read(ctx.dir .. "/calls.jsonl"))
    local first, retry = json.decode(ls[1]), json.decode(ls[2])
    local rule = ctx.rules .. "/10-a.lua"
    assert.same({ rule .. ":1", "ok" }, { first.handlers[1].rule, first.handlers[1].outcome })
    assert.same({ rule .. ":2", "failed", 'returned nil, store "down"' },
      { first.handlers[2].rule, first.handlers[2].outcome, first.handlers[2].error })
    assert.equal("number", type(first.handlers[1].ms))
    assert.is_nil(first.retry)
    assert.same({ "skipped", "failed" }, { retry.handlers[1].outcome, retry.handlers[2].outcome })
    assert.is_true(retry.retry)
    -- and the line replays, its new fields known
    local _, rc, err = eventilator(ctx, "test", "--replay", ctx.dir .. "/calls.jsonl")
    assert.equal(0, rc, err)
    assert.is_nil(err:find("unknown field", 1, true), err)
  end)

  it("writes one JSON line per call with argv0, args, time, sentinel and exit", function()
    ctx:rule("10-fail.lua", 'on("+odown", function() return nil, "no" end)\n')
    assert.equal(0, (ctx:run("eventilator", "+sdown", "master pod1 10.0.0.1 6379")))
    assert.equal(1, (ctx:run("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2")))
    assert.equal(2, (ctx:run("reconfigurator", "pod1", "leader")))
    ctx.env.EVENTILATOR_SENTINEL = "10.0.0.9:26379"
    assert.equal(0, (ctx:run("reconfigurator", "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6379")))
    local ls = lines_of(procs.read(ctx.dir .. "/calls.jsonl"))
    assert.equal(4, #ls)
    local calls = {}
    for i, l in ipairs(ls) do calls[i] = json.decode(l) end
    assert.same({ "+sdown", "master pod1 10.0.0.1 6379" }, calls[1].args)
    assert.equal("eventilator", calls[1].argv0)
    assert.same({ 0, 1, 2, 0 }, { calls[1].exit, calls[2].exit, calls[3].exit, calls[4].exit })
    assert.equal("reconfigurator", calls[4].argv0)
    assert.matches("^pid:%d+$", calls[1].sentinel) -- the caller's pid: the shell here, Sentinel in production
    assert.equal("10.0.0.9:26379", calls[4].sentinel)
    assert.is_true(math.abs(calls[1].time - os.time()) < 60)
  end)

  it("keeps 16 concurrent calls as 16 whole lines", function()
    local long = "master pod1 10.0.0.1 6379 " .. string.rep("x", 3000) -- past any small atomic-write size
    local out = procs.sh(string.format("cd %s && for i in $(seq 16); do EVENTILATOR_CONF=%s %s/bin/eventilator +set %s & done; wait",
      procs.quote(ctx.dir), procs.quote(ctx.conf), procs.quote(procs.build), procs.quote(long .. " quorum 2")))
    assert.is_string(out)
    local ls = lines_of(procs.read(ctx.dir .. "/calls.jsonl"))
    assert.equal(16, #ls)
    for _, l in ipairs(ls) do
      local c = json.decode(l)
      assert.equal(long .. " quorum 2", c.args[2])
    end
  end)

  it("rotates once at record_max, every line whole", function()
    ctx:config(string.format("record = %q\nrecord_max = 400", ctx.dir .. "/calls.jsonl"))
    for i = 1, 7 do ctx:run("eventilator", "+new-epoch", tostring(i)) end
    local now = lines_of(procs.read(ctx.dir .. "/calls.jsonl"))
    local old = lines_of(procs.read(ctx.dir .. "/calls.jsonl.1"))
    assert.is_true(#now >= 1 and #old >= 1)
    assert.is_true(#(procs.read(ctx.dir .. "/calls.jsonl")) <= 400)
    for _, l in ipairs(now) do json.decode(l) end
    for _, l in ipairs(old) do json.decode(l) end
    assert.same({ "+new-epoch", "7" }, json.decode(now[#now]).args)
  end)

  it("never writes through a symlink, nor into anything but a file", function()
    local target = ctx.dir .. "/elsewhere"
    procs.write(target, "")
    os.execute(string.format("ln -s %s %s && mkfifo %s", procs.quote(target),
      procs.quote(ctx.dir .. "/calls.jsonl"), procs.quote(ctx.dir .. "/fifo")))
    local rc, log = ctx:run("eventilator", "+new-epoch", "1")
    assert.equal(0, rc)
    assert.equal("", procs.read(target))
    assert.matches("record [^\n]*calls%.jsonl: a symbolic link, not followed; call not recorded", log)
    ctx:config(string.format("record = %q", ctx.dir .. "/fifo")) -- no reader: an open that follows it would wait
    rc, log = ctx:run("eventilator", "+new-epoch", "2")
    assert.equal(0, rc)
    assert.matches("record [^\n]*fifo: not a regular file; call not recorded", log)
  end)

  it("never renames a symlink put in the record's place when it rotates", function()
    ctx:config(string.format("record = %q\nrecord_max = 200", ctx.dir .. "/calls.jsonl"))
    ctx:run("eventilator", "+new-epoch", "1")
    -- the file swapped for a link to itself: the same file to stat(), not to lstat()
    os.execute(string.format("cd %s && mv calls.jsonl real.jsonl && ln -s real.jsonl calls.jsonl",
      procs.quote(ctx.dir)))
    for i = 2, 4 do ctx:run("eventilator", "+new-epoch", tostring(i)) end
    assert.equal("real.jsonl", (procs.sh("readlink " .. procs.quote(ctx.dir .. "/calls.jsonl")):gsub("%s+$", "")))
    assert.is_nil(procs.read(ctx.dir .. "/calls.jsonl.1"))
  end)

  it("escapes any bytes, and replay gets the very bytes back", function()
    local weird = "master p\255d\1 \"q\" \\ \195\169 10.0.0.1 6379"
    ctx:run("eventilator", "+sdown", weird)
    local text = procs.read(ctx.dir .. "/calls.jsonl")
    assert.is_nil(text:find("\255", 1, true)) -- the file stays UTF-8
    assert.equal(weird, json.decode(text).args[2]:gsub("\195\191", "\255")) -- U+00FF read by a JSON tool
    package.loaded["eventilator.replay"] = nil
    local calls = require("eventilator.replay").read(text, "calls.jsonl")
    assert.equal(weird, calls[1].args[2])
  end)
end)

describe("test --replay", function()
  local ctx
  before_each(function()
    ctx = runner.new()
    procs.shipped_rules(ctx.rules)
  end)
  after_each(function() ctx:cleanup() end)

  it("replays the shared corpus with no error", function()
    local out, rc, err = eventilator(ctx, "test", "--replay", CORPUS, "--json")
    assert.equal(0, rc, err)
    local results = json.decode(out)
    assert.equal(57, #results)
    for _, r in ipairs(results) do
      assert.equal(0, r.exit)
      assert.is_nil(r.error)
      assert.equal("would run", r.handlers[1].outcome) -- 00-log.lua matches everything
    end
    assert.matches("57 call%(s%) replayed, 0 bad line%(s%)", err)
    out, rc = eventilator(ctx, "test", "--replay", CORPUS)
    assert.equal(0, rc)
    assert.matches("line 57  eventilator %+switch%-master \"pod1 ", out)
  end)

  it("runs handlers with --run and reports ok, failed with the message, and the exit", function()
    ctx:rule("50-x.lua", 'on("+odown", function(ev) if ev.votes < 3 then return nil, "too few votes" end return true end)\n')
    procs.write(ctx.dir .. "/calls.jsonl", table.concat({
      '{"argv0":"eventilator","args":["+odown","master pod1 10.0.0.1 6379 #quorum 2/3"],"sentinel":"pid:10","exit":1}',
      '{"argv0":"eventilator","args":["+odown","master pod1 10.0.0.1 6379 #quorum 3/3"],"sentinel":"pid:11","exit":0}',
    }, "\n") .. "\n")
    local out, rc = eventilator(ctx, "test", "--replay", ctx.dir .. "/calls.jsonl", "--run", "--json")
    assert.equal(1, rc)
    local r = json.decode(out)
    assert.same({ "ok", "failed" }, { r[1].handlers[1].outcome, r[1].handlers[2].outcome })
    assert.matches("too few votes", r[1].handlers[2].error)
    assert.same({ 1, 0 }, { r[1].exit, r[2].exit })
    out, rc = eventilator(ctx, "test", "--replay", ctx.dir .. "/calls.jsonl", "--run", "--sentinel", "11", "--json")
    assert.equal(0, rc)
    assert.equal(1, #json.decode(out))
  end)

  it("skips in Sentinel's retry of a failed call what already succeeded, as a real retry does", function()
    ctx:rule("50-x.lua", table.concat({
      "local n = 0",
      'on("+odown", function() return true end)',
      'on("+odown", function() n = n + 1; if n == 1 then return nil, "first time" end return true end)',
    }, "\n") .. "\n")
    local line = '{"argv0":"eventilator","args":["+odown","master pod1 10.0.0.1 6379 #quorum 2/2"],"sentinel":"%s"}'
    procs.write(ctx.dir .. "/calls.jsonl", table.concat({
      line:format("pid:10"), line:format("pid:10"), line:format("pid:11") }, "\n") .. "\n")
    local out, rc = eventilator(ctx, "test", "--replay", ctx.dir .. "/calls.jsonl", "--run", "--json")
    assert.equal(1, rc)
    local outcomes = {}
    for i, r in ipairs(json.decode(out)) do
      outcomes[i] = { r.exit }
      for _, h in ipairs(r.handlers) do
        if h.rule:find("50%-x") then table.insert(outcomes[i], h.outcome) end
      end
    end
    assert.same({ { 1, "ok", "failed" }, { 0, "skipped", "ok" }, { 0, "ok", "ok" } }, outcomes)
  end)

  it("takes an identical call within script_retry_delay of a failed one for a new event, as a real call does", function()
    ctx:rule("50-x.lua", table.concat({
      'on("+odown", function() return true end)',
      'on("+odown", function() return nil, "store down" end)',
    }, "\n") .. "\n")
    local line = '{"argv0":"eventilator","args":["+odown","master pod1 10.0.0.1 6379 #quorum 2/2"],' ..
      '"sentinel":"pid:10","time":%s}'
    -- a failed call, a repeat 10 ms later, then Sentinel's retries of both, 30 s after each
    procs.write(ctx.dir .. "/calls.jsonl", table.concat({ line:format("1000.00"), line:format("1000.01"),
      line:format("1030.00"), line:format("1030.01") }, "\n") .. "\n")
    local out = eventilator(ctx, "test", "--replay", ctx.dir .. "/calls.jsonl", "--run", "--json")
    local first = {}
    for i, r in ipairs(json.decode(out)) do
      for _, h in ipairs(r.handlers) do
        if h.rule:find("50%-x") then first[i] = first[i] or h.outcome end
      end
    end
    assert.same({ "ok", "ok", "skipped", "skipped" }, first)
  end)

  it("replays a recording of any size a line at a time, in the memory of one call", function()
    -- 20 000 calls (about 4 MB) under a memory limit of 8 MiB: held whole, they would not fit
    ctx:config("memory_limit = 8")
    procs.shipped_rules(ctx.rules)
    local f = assert(io.open(ctx.dir .. "/big.jsonl", "wb"))
    for i = 1, 20000 do
      f:write(string.format('{"argv0":"eventilator","args":["+sdown","slave 10.0.%d.%d:6379 10.0.%d.%d 6379 ' ..
        '@ pod%d 10.0.0.1 6379"],"time":%d.5,"sentinel":"pid:%d","exit":0}\n', i // 250, i % 250, i // 250,
        i % 250, i % 7, 1795600000 + i, 100 + i % 3))
    end
    f:close()
    local out, rc, err = eventilator(ctx, "test", "--replay", ctx.dir .. "/big.jsonl", "--run", "--json")
    assert.equal(0, rc, err)
    assert.matches("20000 call%(s%) replayed, 0 bad line%(s%), 0 call%(s%) would not exit 0", err)
    local results = json.decode(out)
    assert.equal(20000, #results)
    assert.equal(0, results[20000].exit)
    assert.is_true(#results[20000].handlers > 0)
  end)

  it("says what is wrong with each bad line and replays the rest", function()
    local good = '{"argv0":"eventilator","args":["+sdown","master pod1 10.0.0.1 6379"]}'
    procs.write(ctx.dir .. "/bad.jsonl", table.concat({
      good,
      "this is not json",
      '{"argv0":"eventilator","args":["+sdown","master pod1 10.0.0.1 6379"],"colour":"red"}',
      '{"argv0":"eventilator","args":"+sdown"}',
      good,
      '{"argv0":"eventilator","args":["+sdown","mas',
    }, "\n"))
    local out, rc, err = eventilator(ctx, "test", "--replay", ctx.dir .. "/bad.jsonl", "--json")
    assert.equal(2, rc)
    assert.same({ 1, 3, 5 }, (function()
      local t = {}
      for i, r in ipairs(json.decode(out)) do t[i] = r.line end
      return t
    end)())
    local msgs = {}
    for l in err:gmatch("[^\n]+") do
      if l:find("bad.jsonl:%d+:") then msgs[#msgs + 1] = l:match("bad%.jsonl:(%d+):") .. " " .. l end
    end
    assert.equal(4, #msgs, err)
    assert.matches("^2 .*not valid JSON.*line skipped", msgs[1])
    assert.matches('^3 .*unknown field "colour" ignored', msgs[2])
    assert.matches('^4 .*"args" must be a list of strings; line skipped', msgs[3])
    assert.matches("^6 .*truncated last line", msgs[4])
  end)
end)

describe("test --spec", function()
  local ctx
  before_each(function() ctx = runner.new() end)
  after_each(function() ctx:cleanup() end)

  it("runs the shipped rule specs with busted", function()
    local out, rc, err = eventilator(ctx, "test", "--spec", "spec/rules")
    assert.equal(0, rc, out .. err)
    assert.matches("0 failures / 0 errors", out)
  end)

  it("fails with a readable diff when the metrics rule is broken", function()
    -- the shipped spec, pointed at a copy of the rule that records for observers instead
    local rule = procs.read(procs.src .. "/rules/10-failover-metrics.lua")
    local broken, n = rule:gsub('ev%.role ~= "leader"', 'ev.role == "leader"')
    assert.equal(1, n)
    procs.write(ctx.dir .. "/10-failover-metrics.lua", broken)
    local spec = procs.read(procs.src .. "/spec/rules/10-failover-metrics_spec.lua")
    local moved
    spec, moved = spec:gsub('testing%.shipped_rules%("10%-failover%-metrics%.lua"%)',
      string.format("%q", ctx.dir .. "/10-failover-metrics.lua"))
    assert.is_true(moved > 0)
    procs.write(ctx.dir .. "/broken_spec.lua", spec)
    local out, rc = eventilator(ctx, "test", "--spec", ctx.dir .. "/broken_spec.lua")
    assert.not_equal(0, rc)
    assert.matches("Expected objects to be the same", out)
    assert.matches("Passed in:", out)
    assert.matches("%[1%] = 'MULTI'", out) -- the expected commands, shown against what was sent
  end)

  it("fails a rule that passes an option its binding refuses, as the real call does", function()
    -- a typo in each stand-in's options: the spec's outcome and error are production's
    local rules = {
      redis = 'on("+sdown", function() return redis.connect{ timout = 5 } end)\n',
      tcp = 'on("+sdown", function() return tcp.connect("127.0.0.1", 1, { timeout = 0 }) end)\n',
      http = 'on("+sdown", function() return http.request{ url = "http://127.0.0.1:1/", timout = 5 } end)\n',
    }
    local want = {
      redis = "bad argument #1 to 'connect' (unknown option 'timout')",
      tcp = "bad argument #3 to 'connect' (option 'timeout' must be a positive number of seconds)",
      http = "bad argument #1 to 'request' (unknown option 'timout')",
    }
    for name, text in pairs(rules) do
      procs.write(ctx.dir .. "/" .. name .. ".lua", text)
      procs.write(ctx.dir .. "/" .. name .. "_spec.lua", string.format([[
local testing = require("eventilator.testing")
it("fails", function()
  local t = testing.load{ rules = %q }
  local r = t:call("eventilator", "+sdown", "master pod1 10.0.0.1 6379")
  assert.same({ "failed" }, r.outcomes)
  assert.equal(1, r.exit)
  assert.truthy(r.handlers[1].error:find(%q, 1, true))
  t:close()
end)
]], ctx.dir .. "/" .. name .. ".lua", want[name]))
      local out, rc = eventilator(ctx, "test", "--spec", ctx.dir .. "/" .. name .. "_spec.lua")
      assert.equal(0, rc, out)
      -- the same rule in a real call: the same failure, word for word
      ctx:rule(name .. ".lua", text)
      local code, log = ctx:run("eventilator", "+sdown", "master pod1 10.0.0.1 6379")
      assert.equal(1, code, log)
      assert.truthy(log:find(want[name], 1, true), log)
      os.remove(ctx.rules .. "/" .. name .. ".lua")
    end
  end)
end)

describe("docs/testing-rules.md", function()
  it("has a walk-through whose HAProxy rule passes its spec", function()
    local ctx = runner.new()
    local doc = procs.read(procs.src .. "/docs/testing-rules.md")
    local files = 0
    for block in doc:gmatch("```lua\n(.-)```") do
      local name = block:match("^%-%- (%S+%.lua)\n")
      if name == "60-haproxy.lua" or name == "spec/60-haproxy_spec.lua" then
        local path = ctx.dir .. "/" .. (name:find("/") and name or "rules/" .. name)
        os.execute("mkdir -p " .. procs.quote(path:match("^(.*)/")))
        procs.write(path, block)
        files = files + 1
      end
    end
    assert.equal(2, files)
    local out, rc = procs.sh(string.format("cd %s && EVENTILATOR_LUA_DIR=%s %s/bin/eventilator test --spec spec/ 2>&1",
      procs.quote(ctx.dir), procs.quote(procs.src .. "/lua"), procs.quote(procs.build)))
    assert.equal(0, rc, out)
    assert.matches("3 successes / 0 failures / 0 errors", out)
    ctx:cleanup()
  end)
end)
