-- The config through the built binary (issue 19): an error in it never
-- makes Sentinel give up (contract section 2), near misses and bad values
-- are flagged, and eventilator.conf is the base of every mode's config
-- (contract section 3), as the calls, `check`, `test`, `config` and
-- `sentinels doctor` read it.
local runner = require("runner")
local procs = require("procs")
local json = require("cjson")

local q = procs.quote
local SDOWN = { "+sdown", "master pod1 127.0.0.1 6379" }
local RECONFIG = { "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380" }

local function has(text, needle)
  return text:find(needle, 1, true) ~= nil
end

describe("a config error", function()
  local ctx
  before_each(function() ctx = runner.new() end)
  after_each(function() ctx:cleanup() end)

  -- the pager, a rule that reads config.slack when it loads, one that reads it in its handler
  local function rules()
    ctx:rule("10-pager.lua", 'on("+sdown", function() log.info("paged") end)\n')
    ctx:rule("30-slack.lua", 'if not config.slack.enabled then return end\n' ..
      'on("+sdown", function() log.info("slack posted") end)\n')
    ctx:rule("40-late.lua", 'on("+sdown", function() log.info("late sees %s", config.slack.channel) end)\n')
  end

  it("in one section fails only what reads it, with the error; the pager runs", function()
    rules()
    ctx:config("slack = { enabeld = true }") -- line 4
    local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
    assert.are.equal(1, rc) -- Sentinel retries: once the file is fixed, Slack gets the event
    assert.matches("info: paged", log)
    assert.matches("error: config [^\n]*eventilator%.conf:4: slack%.enabeld: unknown key, did you mean `enabled`%?", log)
    assert.matches("rule file skipped: [^\n]*30%-slack%.lua:1: config%.slack cannot be used: [^\n]*eventilator%.conf:4: " ..
      "slack%.enabeld: unknown key", log)
    assert.matches("rule [^\n]*40%-late%.lua:1 failed: [^\n]*40%-late%.lua:1: config%.slack cannot be used", log)
    assert.matches("handlers=2 failed=1 rule_files_failed=1 exit=1", log)
  end)

  it("is delivered by the retry after the fix, and the pager is not paged twice", function()
    rules()
    ctx:config('slack = { enabled = true, channel = "ops" }\nscript_retry_delay = 0')
    os.execute("cp " .. q(ctx.conf) .. " " .. q(ctx.dir .. "/fixed.conf"))
    ctx:config('slack = { enabled = true, chanel = "ops" }\nscript_retry_delay = 0')
    assert.are.same({ 1, 0 }, ctx:calls({ "call", "cp " .. q(ctx.dir .. "/fixed.conf") .. " " .. q(ctx.conf), "call" }))
    local log = ctx:logtext()
    assert.are.equal(1, runner.count(log, "info: paged"))
    assert.are.equal(1, runner.count(log, "info: slack posted"))
    assert.are.equal(1, runner.count(log, "info: late sees ops"))
  end)

  it("in a top-level setting runs the handlers with the setting as it was, and exits 1 until fixed", function()
    rules()
    ctx:config("strict_modes = 'no'") -- line 4
    local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
    assert.are.equal(1, rc)
    assert.matches("eventilator%.conf:4: strict_modes: expected a boolean, got string; strict_modes is left at its " ..
      "default %(or the base file's value%)", log)
    assert.matches("info: paged", log)
    assert.matches("config_settings_failed=1", log)
  end)

  it("in a top-level setting makes a replayed call exit 1, as the real call does", function()
    rules()
    ctx:config("strict_modes = 'no'")
    procs.write(ctx.dir .. "/calls.jsonl", '{"argv0": "eventilator", "args": ["+sdown", "master pod1 127.0.0.1 6379"]}\n')
    local rc, _, out = ctx:run("eventilator", "test", "--replay", ctx.dir .. "/calls.jsonl", "--run", "--json")
    assert.are.equal(1, rc, out)
    assert.are.equal(1, json.decode(out)[1].exit)
    assert.matches("config [^\n]*eventilator%.conf:4: strict_modes: expected a boolean", ctx:stderr())
  end)

  it("that leaves the file unusable exits 1, naming the file, the line and the fix", function()
    local cases = {
      { "slack = { enabled = true", "eventilator%.conf:5: '}' expected %(to close '{' at line 4%)" },
      { "x = nil .. 1", "eventilator%.conf:4: attempt to concatenate a nil value" },
      { "x = string.rep('x', 3)", "the config runs in an empty environment" },
    }
    for _, c in ipairs(cases) do
      ctx:config(c[1])
      local rc = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc, c[1])
      assert.matches(c[2], ctx:stderr())
      assert.matches("exit 1: Sentinel retries the call, and the first retry after the fix runs it " ..
        "%(`eventilator check` shows every error%)", ctx:stderr())
    end
    ctx.conf = ctx.dir .. "/folder.conf"
    os.execute("mkdir " .. q(ctx.conf))
    assert.are.equal(1, (ctx:run("reconfigurator", table.unpack(RECONFIG))))
    assert.matches("folder%.conf: Is a directory; fix: make it a file", ctx:stderr())
  end)

  it("check lists every error of every section, near misses and bad values, and exits 1", function()
    ctx:config(table.concat({
      "slack = { enabeld = true }", "log = { level = 'verbose' }", "warning = { enabled = true }",
      "Redis = { port = 1 }", "slak = {}", "pagerduty = { severity = 'urgent' }", "budget = 0",
      "sensu = { port = '3030' }", "mine = { anything = 1 }",
    }, "\n"))
    local rc, _, out = ctx:run("eventilator", "check")
    assert.are.equal(1, rc)
    local want = {
      "eventilator.conf:4: slack.enabeld: unknown key, did you mean `enabled`?",
      'eventilator.conf:5: log.level: expected one of debug, info, warn, error, warning, got "verbose"',
      "eventilator.conf:6: `warning` is not a setting of eventilator, did you mean `warnings`?",
      "eventilator.conf:7: `Redis` is not a setting of eventilator, did you mean `redis`?",
      "eventilator.conf:8: `slak` is not a setting of eventilator, did you mean `slack`?",
      'eventilator.conf:9: pagerduty.severity: expected one of critical, error, warning, info, got "urgent"',
      "eventilator.conf:10: budget: expected seconds above 0",
      "eventilator.conf:11: sensu.port: expected an integer, got string",
    }
    local last = 0
    for _, w in ipairs(want) do
      local at = out:find(w, 1, true)
      assert.truthy(at, w .. "\n" .. out)
      assert.is_true(at > last, "in the file's order: " .. w)
      last = at
    end
    assert.falsy(has(out, "`mine`"))
    assert.matches("0 rule file%(s%), 0 failed, 8 config error%(s%)", out)
  end)

  it("check flags a log level or target that is not one", function()
    for _, c in ipairs({
      { "log = { level = 'verbose' }", 'log.level: expected one of debug, info, warn, error, warning, got "verbose"' },
      { "log = { level = 'wran' }", "did you mean `warn`?" },
      { "log = { target = 'sylog' }", 'log.target: expected "syslog", "stderr" or an absolute file path, got "sylog", ' ..
        "did you mean `syslog`?" },
      { "log = { target = 'events.log' }", 'got "events.log"' },
    }) do
      ctx:config(c[1], true)
      local rc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(1, rc, c[1])
      assert.truthy(has(out, c[2]), out)
    end
    -- in a call: the level falls back to info, the target stays where it was meant to go
    ctx:config(string.format("log = { target = %q, level = 'verbose' }", ctx.log), true)
    ctx.env.EVENTILATOR_RULES = ctx.rules
    ctx:rule("a.lua", 'on("+sdown", function() log.debug("hidden") log.info("shown") end)\n')
    local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
    assert.are.equal(0, rc)
    assert.matches("error: config [^\n]*:1: log%.level: expected one of", log)
    assert.matches("info: shown", log)
    assert.falsy(has(log, "hidden"))
  end)

  it("config shows a section with an error as the error, and exits 1", function()
    ctx:config("slack = { enabeld = true }\nredis = { port = 7000 }")
    local rc, _, out = ctx:run("eventilator", "config")
    assert.are.equal(1, rc)
    local doc = json.decode(out)
    assert.matches("slack%.enabeld: unknown key", doc.slack["<error>"])
    assert.are.equal(7000, doc.redis.port)
    assert.matches("slack%.enabeld: unknown key", ctx:stderr())
  end)
end)

-- /etc/redis (the build's config folder) is a temporary folder for each
-- case, mounted over it in a private mount namespace (bubblewrap), so the
-- calls read exactly what an installation's calls read: no EVENTILATOR_CONF.
describe("eventilator.conf as the base of every mode", function()
  local help = procs.sh(q(procs.build .. "/bin/eventilator") .. " --help")
  local CONFDIR = help:match("config: (%S+)/<name>%.conf")
  local bwrap_ok = select(2, procs.sh("bwrap --dev-bind / / true 2>/dev/null")) == 0
  local dir, etc, logf

  before_each(function()
    dir = procs.tmpdir()
    etc = dir .. "/etc"
    logf = dir .. "/log"
    os.execute("mkdir -p " .. q(etc .. "/eventilator.d") .. " " .. q(dir .. "/state"))
    procs.write(etc .. "/eventilator.d/00-show.lua", [[
on("*", function(ev)
  log.info("%s sees store %s:%s slack=%s channel=%s sensu=%s", ev.mode, config.redis.host, config.redis.port,
    tostring(config.slack.enabled), config.slack.channel, tostring(config.sensu.enabled))
end)
]])
  end)
  after_each(function() procs.rmtree(dir) end)

  local function write(name, text) procs.write(etc .. "/" .. name, text) end

  -- Run a shell command with `etc` as CONFDIR; returns its output (stdout and stderr), exit code.
  local function sh(cmd, env)
    cmd = "EVENTILATOR_LOG=" .. q(logf) .. " " .. (env or "") .. " " .. cmd
    local preload = os.getenv("LD_PRELOAD") -- the sanitized build: for the binary, not for bwrap
    if preload and preload ~= "" then cmd = "LD_PRELOAD=" .. q(preload) .. " " .. cmd end
    return procs.sh(string.format("env -u LD_PRELOAD -u EVENTILATOR_CONF bwrap --dev-bind / / --bind %s %s sh -c %s 2>&1",
      q(etc), q(CONFDIR), q(cmd)))
  end

  local function run(name, ...)
    local args = {}
    for i = 1, select("#", ...) do args[i] = q((select(i, ...))) end
    local before = #(procs.read(logf) or "")
    local out, rc = sh(q(procs.build .. "/bin/" .. name) .. " " .. table.concat(args, " "))
    return rc, (procs.read(logf) or ""):sub(before + 1), out
  end

  local BASE = 'redis = { host = "10.9.9.9", port = 7001 }\nslack = { enabled = true, channel = "ops" }\n' ..
    "state_dir = %q\n"

  it("reconfigurator reads eventilator.conf with reconfigurator.conf over it, key by key", function()
    if not bwrap_ok then return pending("bubblewrap cannot make a mount namespace here") end
    write("eventilator.conf", BASE:format(dir .. "/state"))
    write("reconfigurator.conf", 'redis = { port = 7002 }\nslack = { channel = "failovers" }\n')
    local rc, log = run("reconfigurator", table.unpack(RECONFIG))
    assert.are.equal(0, rc, log)
    assert.matches("reconfigurator sees store 10%.9%.9%.9:7002 slack=true channel=failovers", log)
    rc, log = run("registrator", table.unpack(RECONFIG)) -- no registrator.conf: the base alone
    assert.are.equal(0, rc, log)
    assert.matches("reconfigurator sees store 10%.9%.9%.9:7001 slack=true channel=ops", log)
    rc, log = run("eventilator", table.unpack(SDOWN))
    assert.are.equal(0, rc, log)
    assert.matches("eventilator sees store 10%.9%.9%.9:7001 slack=true channel=ops", log)
  end)

  it("test --reconfig, config --reconfig and check read what reconfigurator reads", function()
    if not bwrap_ok then return pending("bubblewrap cannot make a mount namespace here") end
    write("eventilator.conf", BASE:format(dir .. "/state"))
    write("reconfigurator.conf", "redis = { port = 7002 }\n")
    local rc, log = run("eventilator", "test", "--run", "--reconfig", table.unpack(RECONFIG))
    assert.are.equal(0, rc, log)
    assert.matches("reconfigurator sees store 10%.9%.9%.9:7002", log)
    local _, out
    rc, _, out = run("eventilator", "config", "--reconfig")
    assert.are.equal(0, rc, out)
    local doc = json.decode(out)
    assert.are.same({ "10.9.9.9", 7002, "ops" }, { doc.redis.host, doc.redis.port, doc.slack.channel })
    rc, _, out = run("eventilator", "check")
    assert.are.equal(0, rc, out)
    assert.truthy(has(out, "config  " .. CONFDIR .. "/eventilator.conf (lua)\n"), out)
    assert.truthy(has(out, "config  reconfigurator: " .. CONFDIR .. "/eventilator.conf (lua) + " .. CONFDIR ..
      "/reconfigurator.conf (lua)"), out)
    -- an error names the file it is in, in check and in the call
    write("reconfigurator.conf", "redis = { prot = 7002 }\n")
    rc, _, out = run("eventilator", "check")
    assert.are.equal(1, rc, out)
    assert.truthy(has(out, "FAILED  config " .. CONFDIR .. "/reconfigurator.conf:1: redis.prot: unknown key, " ..
      "did you mean `port`?"), out)
    rc, log = run("reconfigurator", table.unpack(RECONFIG))
    assert.are.equal(1, rc, log) -- the rule reads config.redis
    assert.truthy(has(log, "config " .. CONFDIR .. "/reconfigurator.conf:1: redis.prot: unknown key"), log)
  end)

  it("layers a legacy TOML file on either side, translated as it loads alone", function()
    if not bwrap_ok then return pending("bubblewrap cannot make a mount namespace here") end
    write("eventilator.conf", procs.read(procs.shared .. "/legacy/eventilator.conf"))
    write("reconfigurator.conf", string.format("redis = { port = 7002 }\nstate_dir = %q\n", dir .. "/state"))
    local rc, log = run("reconfigurator", table.unpack(RECONFIG))
    assert.are.equal(0, rc, log)
    -- RedisAddress and [SensuJIT] Enabled from the Go file, the port from reconfigurator.conf
    assert.matches("reconfigurator sees store 127%.0%.0%.1:7002 slack=false channel=sentinel%-events sensu=true", log)
    write("eventilator.conf", BASE:format(dir .. "/state"))
    write("reconfigurator.conf", procs.read(procs.shared .. "/legacy/reconfigurator.conf"))
    rc, log = run("reconfigurator", table.unpack(RECONFIG))
    assert.are.equal(0, rc, log)
    assert.matches("reconfigurator sees store 127%.0%.0%.1:6379 slack=true channel=ops", log)
    local out
    rc, log, out = run("eventilator", "check")
    assert.are.equal(0, rc, out .. log)
    assert.truthy(has(out, "/reconfigurator.conf (legacy TOML)"), out)
  end)

  it("EVENTILATOR_CONF names the one file every mode reads", function()
    if not bwrap_ok then return pending("bubblewrap cannot make a mount namespace here") end
    write("eventilator.conf", BASE:format(dir .. "/state"))
    write("other.conf", string.format("redis = { port = 7005 }\nstate_dir = %q\n", dir .. "/state"))
    local before = #(procs.read(logf) or "")
    local out, rc = sh(q(procs.build .. "/bin/reconfigurator") .. " " .. table.concat(RECONFIG, " "),
      "EVENTILATOR_CONF=" .. q(CONFDIR .. "/other.conf") .. " EVENTILATOR_RULES=" .. q(CONFDIR .. "/eventilator.d"))
    assert.are.equal(0, rc, out)
    assert.matches("reconfigurator sees store 127%.0%.0%.1:7005 slack=false", (procs.read(logf) or ""):sub(before + 1))
  end)

  it("sentinels doctor checks each mode's config as that mode reads it, one line per mode", function()
    if not bwrap_ok then return pending("bubblewrap cannot make a mount namespace here") end
    local scripts = dir .. "/lib"
    os.execute(string.format("mkdir -p %s && cp /bin/true %s/eventilator && ln -s eventilator %s/reconfigurator",
      q(scripts), q(scripts), q(scripts)))
    procs.write(dir .. "/unit", "[Service]\nExecPaths=/\n")
    write("eventilator.conf", BASE:format(dir .. "/state") .. "metrics = { enabled = false }\n")
    write("reconfigurator.conf", "redis = { prot = 7002 }\n")
    local function doctor()
      return run("eventilator", "sentinels", "doctor", "--user", "root", "--notification", scripts .. "/eventilator",
        "--reconfig", scripts .. "/reconfigurator", "--unit", dir .. "/unit")
    end
    local rc, _, out = doctor()
    assert.are.equal(1, rc, out)
    assert.truthy(has(out, "ok    config of eventilator (" .. CONFDIR .. "/eventilator.conf (lua)): valid, readable by root"),
      out)
    assert.truthy(has(out, "FAIL  config of reconfigurator (" .. CONFDIR .. "/eventilator.conf (lua) + " .. CONFDIR ..
      "/reconfigurator.conf (lua)): 1 error(s): " .. CONFDIR .. "/reconfigurator.conf:1: redis.prot: unknown key"), out)
    write("reconfigurator.conf", "redis = { port = 7002 }\n")
    _, _, out = doctor()
    assert.truthy(has(out, "ok    config of reconfigurator ("), out)
    if select(2, procs.sh("id redis >/dev/null 2>&1")) == 0 then
      os.execute("chmod 600 " .. q(etc .. "/reconfigurator.conf"))
      rc, _, out = run("eventilator", "sentinels", "doctor", "--user", "redis", "--notification", scripts .. "/eventilator",
        "--reconfig", scripts .. "/reconfigurator", "--unit", dir .. "/unit")
      assert.are.equal(1, rc, out)
      assert.truthy(has(out, "/reconfigurator.conf is not readable by redis (mode 0600)"), out)
    end
  end)
end)
