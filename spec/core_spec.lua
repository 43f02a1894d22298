-- The core through the built binary: modes, exit codes, the rules engine,
-- the time budget, config loading and the subcommands.
local runner = require("runner")
local procs = require("procs")

describe("eventilator core", function()
  local ctx
  before_each(function() ctx = runner.new() end)
  after_each(function() ctx:cleanup() end)

  local SDOWN = { "+sdown", "master pod1 127.0.0.1 6379" }

  describe("invocation", function()
    it("exits 0 and logs one info line when no rule matches", function()
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.matches("info: %+sdown pod=pod1 handlers=0 failed=0 rule_files_failed=0 exit=0 ms=[%d.]+", log)
    end)

    it("fails the call when the rules folder is missing", function()
      ctx:config(string.format("log = { target = %q }\nrules_dir = %q", ctx.log, ctx.dir .. "/nope"), true)
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rules folder .*/nope: No such file or directory", log)
    end)

    it("refuses wrong argument counts with exit 2 and a clear line", function()
      local cases = {
        { "eventilator", "+sdown" },
        { "eventilator", "+sdown", "master pod1 127.0.0.1 6379", "extra" },
        { "reconfigurator", "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2" },
        { "registrator" },
      }
      for _, c in ipairs(cases) do
        local rc, log = ctx:run(table.unpack(c))
        assert.are.equal(2, rc, table.concat(c, " "))
        assert.matches("wrong number of arguments", log)
      end
      local rc = ctx:run("eventilator")
      assert.are.equal(2, rc)
      assert.matches("no arguments", ctx:stderr())
    end)

    it("refuses bad descriptions with exit 2", function()
      local cases = {
        { "+sdown", "" },
        { "+odown", "master pod1 127.0.0.1 6379 #quorum a/b" },
        { "+sdown", "master pod1 127.0.0.1 port" },
        { "+sdown", "master pod1 \255\254 127.0.0.1 6379" },
        { "+sdown", string.rep("x", 100 * 1024) },
      }
      for _, c in ipairs(cases) do
        local rc, log = ctx:run("eventilator", c[1], c[2])
        assert.are.equal(2, rc, c[2]:sub(1, 60))
        assert.matches("error: ", log)
        assert.is_true(#log < 2000, "one short line, not the whole argument")
      end
      local rc, log = ctx:run("reconfigurator", "pod1", "leader", "start", "10.0.0.1", "x", "10.0.0.2", "6380")
      assert.are.equal(2, rc)
      assert.matches("bad from%-port 'x'", log)
    end)

    it("picks the mode by the name it was called by", function()
      ctx:rule("00.lua", [[
        on("*", function(ev) log.info("mode=%s name=%s pod=%s", ev.mode, ev.name, ev.pod) end)
      ]])
      local _, log = ctx:run("reconfigurator", "pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380")
      assert.matches("mode=reconfigurator name=client%-reconfig pod=pod1", log)
      _, log = ctx:run("registrator", "pod2", "observer", "start", "10.0.0.1", "6379", "10.0.0.2", "6380")
      assert.matches("mode=reconfigurator name=client%-reconfig pod=pod2", log)
      _, log = ctx:run("notify-anything", "-sdown", "master pod3 127.0.0.1 6379")
      assert.matches("mode=eventilator name=%-sdown pod=pod3", log)
    end)

    it("prints help and version", function()
      local _, _, out = ctx:run("eventilator", "--help")
      assert.matches("usage: eventilator", out)
      -- a person asking, by any name: Sentinel never calls with one argument
      for _, c in ipairs({ { "eventilator", "help" }, { "reconfigurator", "--help" }, { "registrator", "-h" } }) do
        local rc, _, text = ctx:run(c[1], c[2])
        assert.are.equal(0, rc, table.concat(c, " "))
        assert.matches("usage: eventilator", text, nil, table.concat(c, " "))
      end
      local rc, _, v = ctx:run("eventilator", "--version")
      assert.are.equal(0, rc)
      assert.matches("^eventilator %d+%.%d+%.%d+", v)
    end)

    it("runs every call of a real Sentinel's failover corpus with exit 0", function()
      ctx:rule("00-log.lua", [[on("*", function(ev) log.info("seen %s", ev.name) end)]])
      local n = 0
      for line in io.lines(procs.shared .. "/sentinel/corpus-failover.jsonl") do
        local argv0 = line:match('"argv0": "([^"]+)"')
        local args = {}
        for a in line:match('"args": %[(.*)%]'):gmatch('"([^"]*)"') do args[#args + 1] = a end
        local rc, log = ctx:run(argv0, table.unpack(args))
        assert.are.equal(0, rc, line)
        local name = argv0 == "reconfigurator" and "client-reconfig" or args[1]
        assert.is_truthy(log:find("seen " .. name, 1, true), line)
        n = n + 1
      end
      assert.is_true(n >= 50)
    end)
  end)

  describe("rules engine", function()
    it("loads *.lua in byte order, each in its own environment", function()
      ctx:rule("b.lua", [[shared = "b"; on("*", function() log.info("b sees %s", tostring(shared)) end)]])
      ctx:rule("a.lua", [[on("*", function() log.info("a sees %s", tostring(shared)) end)]])
      ctx:rule("B.lua", [[on("*", function() log.info("B") end)]])
      ctx:rule("c.lua.off", [[on("*", function() log.info("off ran") end)]])
      ctx:rule("d.lua.example", [[on("*", function() log.info("example ran") end)]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      local B, a, b = log:find("info: B\n"), log:find("a sees nil"), log:find("b sees b")
      assert.truthy(B and a and b)
      assert.is_true(B < a and a < b)
      assert.falsy(log:find("off ran") or log:find("example ran"))
    end)

    it("matches exact names, globs and lists, in registration order", function()
      ctx:rule("r.lua", [[
        on("+sdown", function() log.info("h1") end)
        on("+*down", function() log.info("h2") end)
        on({ "-odown", "+sdown" }, function() log.info("h3") end)
        on("*", function() log.info("h4") end)
        on("+odown", function() log.info("never") end)
        on("*-slave", function() log.info("never") end)
      ]])
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      local p1, p2, p3, p4 = log:find("h1"), log:find("h2"), log:find("h3"), log:find("h4")
      assert.truthy(p1 and p2 and p3 and p4)
      assert.is_true(p1 < p2 and p2 < p3 and p3 < p4)
      assert.falsy(log:find("never"))
      assert.matches("handlers=4 failed=0", log)
    end)

    it("logs a failing handler with file:line and a traceback and runs the others", function()
      ctx:rule("r.lua", "on('+sdown', function() error('kaput') end)\n" ..
        "on('+sdown', function() return nil, 'store down' end)\n" ..
        "on('+sdown', function() return false end)\n" ..
        "on('+sdown', function() log.info('still ran') end)\n")
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rule [^ ]*/r%.lua:1 failed: [^ ]*/r%.lua:1: kaput | stack traceback", log)
      assert.matches("rule [^ ]*/r%.lua:2 failed: returned nil, store down", log)
      assert.matches("rule [^ ]*/r%.lua:3 failed: returned false", log)
      assert.matches("still ran", log)
      assert.matches("handlers=4 failed=3 rule_files_failed=0 exit=1", log)
    end)

    it("skips a rule file that does not compile and runs the rest", function()
      ctx:rule("10-bad.lua", "on('+sdown', function() end\n")
      ctx:rule("20-raises.lua", "on('+sdown', function() end)\nerror('at load')\n")
      ctx:rule("30-good.lua", "on('+sdown', function() log.info('good ran') end)\n")
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rule file skipped: [^ ]*/10%-bad%.lua:2:", log)
      assert.matches("rule file skipped: [^ ]*/20%-raises%.lua:2: at load", log)
      assert.matches("good ran", log)
      assert.matches("handlers=1 failed=0 rule_files_failed=2 exit=1", log)
    end)

    it("loads rule files as text only", function()
      local f = assert(io.open(ctx.rules .. "/bin.lua", "wb"))
      f:write(string.dump(load("on('*', function() end)")))
      f:close()
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("bin%.lua.*binary chunk", log)
    end)

    it("rejects misuse of on() at load time", function()
      ctx:rule("r.lua", "on('+sdown', 'not a function')\n")
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("r%.lua:1: bad argument #2 to 'on'", log)
    end)

    it("gives handlers the event table of the contract", function()
      ctx:rule("r.lua", [[
        on("*", function(ev)
          local i, m = ev.instance or {}, ev.master or {}
          log.info("F name=%s pod=%s itype=%s iname=%s iip=%s iport=%s mname=%s mip=%s mport=%s " ..
            "votes=%s quorum=%s text=%s args=%d time=%s host=%s",
            ev.name, ev.pod, i.type, i.name, i.ip, math.type(i.port), m.name, m.ip, m.port,
            ev.votes, ev.quorum, ev.text, #ev.args, math.type(ev.time), type(ev.host))
        end)
      ]])
      local _, log = ctx:run("eventilator", "+sdown", "slave 10.0.0.7:6379 10.0.0.7 6379 @ cache1 10.0.0.5 6379")
      assert.matches("F name=%+sdown pod=cache1 itype=slave iname=10%.0%.0%.7:6379 iip=10%.0%.0%.7 " ..
        "iport=integer mname=cache1 mip=10%.0%.0%.5 mport=6379 votes=nil quorum=nil " ..
        "text=slave 10%.0%.0%.7:6379 10%.0%.0%.7 6379 @ cache1 10%.0%.0%.5 6379 args=2 time=float host=string", log)
      _, log = ctx:run("eventilator", "+odown", "master cache1 10.0.0.5 6379 #quorum 2/3")
      assert.matches("votes=2 quorum=3", log)
    end)

    it("opens the standard libraries on first use", function()
      ctx:rule("r.lua", [[
        local first = ("%d-%s"):format(7, "x") -- a string method before `string` is named
        on("*", function()
          log.info("libs %s %d %s %s %s %s %s", first, math.floor(2.5), type(os.time()), type(table.concat),
            type(io.write), type(utf8.char), type(require("eventilator.metrics").record_failover))
        end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc, log)
      assert.matches("libs 7%-x 2 number function function function function", log)
    end)

    it("formats log lines as string.format does, with or without the string library", function()
      -- %s, %d and %% are formatted by the host itself; anything else goes to string.format
      ctx:rule("r.lua", [[
        local t = setmetatable({}, { __tostring = function() return "T!" end })
        on("*", function()
          log.info("a %s|%d|%%|%s|%s|%s", "x", -42, t, nil, true)
          log.info("b %5s|%-3d|%.2f|%q", "ab", 7, 3.14159, "q")
          log.info("c %d", 3.0)
          log.info("d %s") -- one argument: the text as it is
          local ok, err = pcall(log.info, "e %d", 1.5)
          log.info("f %s %s", tostring(ok), err)
          ok, err = pcall(log.info, "g %s %s", "only one")
          log.info("h %s %s", tostring(ok), err)
        end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc, log)
      assert.matches("a x|%-42|%%|T!|nil|true", log)
      assert.matches('b    ab|7  |3.14|"q"', log, 1, true)
      assert.matches("c 3\n", log, 1, true)
      assert.matches("d %s\n", log, 1, true)
      assert.matches("f false [^\n]*number has no integer representation", log)
      assert.matches("h false [^\n]*bad argument #3 to '[%w.]*format' %(no value%)", log)
    end)

    it("dispatches an unknown event with name, text and args", function()
      ctx:rule("r.lua", [[on("+brand-new", function(ev) log.info("got %s [%s] %d", ev.name, ev.text, #ev.args) end)]])
      local rc, log = ctx:run("eventilator", "+brand-new", "some future text")
      assert.are.equal(0, rc)
      assert.matches("got %+brand%-new %[some future text%] 2", log)
    end)

    it("loads the shipped modules from EVENTILATOR_LUA_DIR when set (development)", function()
      os.execute("mkdir -p " .. procs.quote(ctx.dir .. "/lua/eventilator"))
      procs.write(ctx.dir .. "/lua/eventilator/dedupe.lua", "return { marker = 'from disk' }")
      ctx:rule("r.lua", [[on("*", function() log.info("dedupe is %s", tostring(require("eventilator.dedupe").marker)) end)]])
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.matches("dedupe is nil", log) -- the compiled-in module
      ctx.env.EVENTILATOR_LUA_DIR = ctx.dir .. "/lua"
      _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.matches("dedupe is from disk", log)
    end)

    it("honours EVENTILATOR_RULES", function()
      local other = ctx.dir .. "/other"
      os.execute("mkdir -p " .. other)
      procs.write(other .. "/x.lua", "on('*', function() log.info('from other') end)")
      ctx.env.EVENTILATOR_RULES = other
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.matches("from other", log)
    end)

    it("hands a rule that uses json to the full runtime, once", function()
      ctx:rule("r.lua", [[on("+sdown", function(ev) log.info("json says %s", json.encode({ pod = ev.pod })) end)]])
      ctx:rule("s.lua", [[on("+sdown", function() log.info("lean handler") end)]])
      for _ = 1, 2 do -- the second call finds the rule files compiled in the cache
        local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
        assert.are.equal(0, rc)
        assert.matches('json says {"pod":"pod1"}', log)
        assert.matches("runtime=full", log)
        local _, n = log:gsub("lean handler", "")
        assert.are.equal(1, n)
      end
    end)
  end)

  describe("time budget", function()
    it("stops a runaway handler and still ends with a clear line", function()
      ctx:config("budget = 1")
      ctx:rule("r.lua", [[
        on("+sdown", function() while true do end end)
        on("+sdown", function() log.info("second ran") end)
      ]])
      local t0 = procs.now()
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.is_true(procs.now() - t0 < 4)
      assert.matches("r%.lua:1 failed: [^ ]*r%.lua:1: stopped: time budget exceeded", log)
      assert.matches("second ran", log)
    end)

    it("ends a handler that swallows the stop with the watchdog", function()
      ctx:config("budget = 1")
      ctx:rule("r.lua", [[on("+sdown", function() while true do pcall(function() while true do end end) end end)]])
      local t0 = procs.now()
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.is_true(procs.now() - t0 < 6)
      assert.matches("time budget of 1 s exceeded, stopped by the watchdog", log)
    end)
  end)

  describe("where the log goes", function()
    local q = procs.quote
    local is_root = (procs.sh("id -u"):gsub("%s+$", "")) == "0"

    -- A syslog daemon's socket at ctx.syslog: every datagram, a line in `out`.
    local function syslogd(out)
      procs.write(ctx.dir .. "/syslogd.py", "import socket, sys\n"
        .. "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\n"
        .. "f = open(sys.argv[2], 'ab', 0)\nwhile True:\n    f.write(s.recv(65536) + b'\\n')\n")
      local pid = procs.spawn(string.format("python3 %s %s %s", q(ctx.dir .. "/syslogd.py"), q(ctx.syslog), q(out)))
      procs.wait(function() return select(2, procs.sh("test -S " .. q(ctx.syslog))) == 0 end, 10, "the syslog socket")
      return pid
    end

    -- As the Sentinel's user (redis), with ctx's config and environment.
    local function as_redis(...)
      local args = {}
      for i, a in ipairs({ ... }) do args[i] = q(a) end
      local env = {}
      for k, v in pairs(ctx.env) do env[#env + 1] = k .. "=" .. q(v) end
      return procs.sh(string.format("env EVENTILATOR_CONF=%s %s setpriv --reuid=redis --regid=redis --clear-groups "
        .. "%s %s 2>&1", q(ctx.conf), table.concat(env, " "), q(procs.build .. "/bin/eventilator"),
        table.concat(args, " ")))
    end

    it("goes to syslog's socket by default, as ident eventilator, facility daemon", function()
      ctx:config(string.format("rules_dir = %q\nstate_dir = %q\n", ctx.rules, ctx.dir .. "/state"), true)
      local got = ctx.dir .. "/syslog.out"
      local pid = syslogd(got)
      local rc = ctx:run("eventilator", table.unpack(SDOWN))
      -- sent before the call ended; the listener writes it down when it gets to it
      local ok = pcall(procs.wait, function() return (procs.read(got) or ""):find("+sdown pod=pod1", 1, true) end, 10,
        "the line in syslog")
      procs.kill(pid)
      assert.are.equal(0, rc)
      assert.is_true(ok, procs.read(got))
      -- <daemon.info>Mmm dd hh:mm:ss eventilator[pid]: message (RFC 3164, as syslog(3) sends it)
      assert.matches("^<30>%a%a%a [ %d]%d %d%d:%d%d:%d%d eventilator%[%d+%]: %+sdown pod=pod1 handlers=0",
        procs.read(got) or "")
      assert.is_nil(procs.read(ctx.fallback))
    end)

    it("falls back to the fallback file when there is no syslog socket", function()
      ctx:config(string.format("rules_dir = %q\nstate_dir = %q\n", ctx.rules, ctx.dir .. "/state"), true)
      local rc = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      local text = procs.read(ctx.fallback) or ""
      assert.matches("^%d+%-%d+%-%d+T[%d:.]+ eventilator%[%d+%]: info: %+sdown pod=pod1 handlers=0 failed=0", text)
      assert.are.equal(1, runner.count(text, "\n", true), text) -- the syslog target says nothing about it
      -- and its files are made 0640
      assert.are.equal("640", (procs.sh("stat -c %a " .. q(ctx.fallback)):gsub("%s+$", "")))
    end)

    it("sends the watchdog's line, written from its signal handler, to syslog or else the fallback file", function()
      ctx:config(string.format("rules_dir = %q\nstate_dir = %q\nbudget = 1\n", ctx.rules, ctx.dir .. "/state"), true)
      ctx:rule("r.lua", [[on("+sdown", function() while true do pcall(function() while true do end end) end end)]])
      local rc = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("eventilator%[%d+%]: error: %+sdown: time budget of 1 s exceeded, stopped by the watchdog; exit 1 %(",
        procs.read(ctx.fallback) or "")
      local got = ctx.dir .. "/syslog.out"
      local pid = syslogd(got)
      os.remove(ctx.fallback)
      rc = ctx:run("eventilator", table.unpack(SDOWN))
      local ok = pcall(procs.wait, function() return (procs.read(got) or ""):find("watchdog", 1, true) end, 10,
        "the line in syslog")
      procs.kill(pid)
      assert.is_true(ok, procs.read(got))
      assert.are.equal(1, rc)
      assert.matches("^<27>eventilator%[%d+%]: error: %+sdown: time budget of 1 s exceeded, stopped by the watchdog",
        procs.read(got) or "")
      assert.is_nil(procs.read(ctx.fallback))
    end)

    it("falls back, saying why once, when the log file is a symbolic link", function()
      os.execute(string.format("ln -s %s %s", q(ctx.dir .. "/elsewhere"), q(ctx.log)))
      local rc = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.is_nil(procs.read(ctx.dir .. "/elsewhere"))
      local text = procs.read(ctx.fallback) or ""
      assert.are.equal(1, runner.count(text, "error: log file " .. ctx.log .. " cannot be opened for append, so "
        .. "this process logs to " .. ctx.fallback .. ": it is a symbolic link", true), text)
      assert.truthy(text:find("info: +sdown pod=pod1", 1, true), text)
    end)

    it("falls back, saying why once with a fix that cannot harm, when the Sentinel's user cannot append", function()
      if not is_root then return end -- needs a second user
      -- made by root (as root's `check` made it before files went to the folder's owner)
      os.execute(string.format("chmod 755 %s && mkdir %s && chown redis %s && touch %s && chmod 640 %s",
        q(ctx.dir), q(ctx.dir .. "/logs"), q(ctx.dir .. "/logs"), q(ctx.dir .. "/logs/e.log"),
        q(ctx.dir .. "/logs/e.log")))
      ctx.env.EVENTILATOR_LOG_FALLBACK = ctx.dir .. "/logs/fallback.log"
      ctx:config(string.format("log = { target = %q }\nrules_dir = %q\nstate_dir = %q\n", ctx.dir .. "/logs/e.log",
        ctx.rules, ctx.dir .. "/logs/state"), true)
      os.execute("chmod 644 " .. q(ctx.conf) .. " && chmod 755 " .. q(ctx.rules))
      local out = as_redis(table.unpack(SDOWN))
      as_redis(table.unpack(SDOWN))
      local text = procs.read(ctx.dir .. "/logs/fallback.log") or ""
      assert.are.equal(2, runner.count(text, "info: +sdown pod=pod1", true), out .. text)
      assert.are.equal(2, runner.count(text, "error: log file " .. ctx.dir .. "/logs/e.log cannot be opened for "
        .. "append, so this process logs to " .. ctx.dir .. "/logs/fallback.log: it belongs to root, not to redis, "
        .. "which runs this call: if redis is the Sentinel's user, fix (as root): chown redis " .. ctx.dir
        .. "/logs/e.log", true), text)
      assert.are.equal("", procs.read(ctx.dir .. "/logs/e.log"))
    end)

    it("check fails on a log file whose folder does not exist, and shows where syslog lines go", function()
      local nope = ctx.dir .. "/nope/e.log"
      ctx:config(string.format("log = { target = %q }\nrules_dir = %q\n", nope, ctx.rules), true)
      local rc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(1, rc, out)
      assert.truthy(out:find("FAILED  log file " .. nope .. " cannot be opened for append, so this process logs to "
        .. ctx.fallback .. ": its folder " .. ctx.dir .. "/nope does not exist; fix: make it, writable by the "
        .. "Sentinel's user, or point log.target into /var/log/redis\n", 1, true), out)
      ctx:config(string.format("log = { target = %q }\nrules_dir = %q\n", ctx.log, ctx.rules), true)
      rc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("\nlog     " .. ctx.log .. "\n", 1, true), out)
      ctx:config(string.format("rules_dir = %q\n", ctx.rules), true)
      rc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("\nlog     syslog: no syslog socket at " .. ctx.syslog .. " (no syslog daemon); lines go to "
        .. ctx.fallback .. "\n", 1, true), out)
    end)

    it("makes the log file, as root, the folder owner's: the Sentinel's user appends to what root's check made", function()
      if not is_root then return end
      os.execute(string.format("chmod 755 %s && mkdir %s && chown redis:redis %s", q(ctx.dir), q(ctx.dir .. "/logs"),
        q(ctx.dir .. "/logs")))
      local logf = ctx.dir .. "/logs/e.log"
      ctx:config(string.format("log = { target = %q }\nrules_dir = %q\nstate_dir = %q\n", logf, ctx.rules,
        ctx.dir .. "/logs/state"), true)
      os.execute("chmod 644 " .. q(ctx.conf) .. " && chmod 755 " .. q(ctx.rules))
      local rc = ctx:run("eventilator", "check")
      assert.are.equal(0, rc, ctx:stderr())
      assert.are.equal("redis:redis 640", (procs.sh("stat -c '%U:%G %a' " .. q(logf)):gsub("%s+$", "")))
      local out = as_redis(table.unpack(SDOWN))
      assert.truthy((procs.read(logf) or ""):find("info: +sdown pod=pod1", 1, true), out)
      assert.is_nil(procs.read(ctx.fallback))
    end)
  end)

  describe("config", function()
    it("uses built-in defaults when the file is missing", function()
      ctx.conf = ctx.dir .. "/missing.conf"
      ctx.env.EVENTILATOR_LOG = ctx.log
      ctx.env.EVENTILATOR_RULES = ctx.rules
      ctx:rule("r.lua", [[on("*", function() log.info("port=%d metrics=%s", config.redis.port, config.metrics.enabled) end)]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.matches("port=6379 metrics=true", log)
    end)

    it("merges sections over the defaults and passes the user's own", function()
      ctx:config([[
        redis = { host = "10.1.1.1" }
        haproxy = { socket = "/run/haproxy/admin.sock" }
      ]])
      ctx:rule("r.lua", [[on("*", function() log.info("%s:%d %s", config.redis.host, config.redis.port, config.haproxy.socket) end)]])
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.matches("10%.1%.1%.1:6379 /run/haproxy/admin%.sock", log)
    end)

    it("warns about a user section that looks like a typo of a known one, and check fails on it", function()
      ctx:config("slak = { enabled = true }\nmy_pager = { url = 'x' }\nredis2 = { port = 1 }")
      ctx:rule("r.lua", [[on("*", function() log.info("slak reaches rules: %s", tostring(config.slak.enabled)) end)]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.matches("warn: config [^\n]*eventilator%.conf:4: `slak` is not a setting of eventilator, did you mean `slack`%?", log)
      assert.matches("slak reaches rules: true", log)
      assert.falsy(log:find("my_pager") or log:find("redis2"))
      local _, _, out = ctx:run("eventilator", "check")
      assert.matches("FAILED  config [^\n]*eventilator%.conf:4: `slak` is not a setting of eventilator, did you mean `slack`%?", out)
    end)

    it("runs in an empty environment", function()
      ctx:config("x = os.getenv('HOME')")
      local rc = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("eventilator%.conf:4: attempt to index a nil value %(global 'os'%)", ctx:stderr())
      assert.matches("the config runs in an empty environment: no os, io or require", ctx:stderr())
    end)

    -- Sections are built on first read (src/core/schema.c); a rule must not be able to tell.
    it("gives a rule's pairs(config) every section, as `eventilator config --secrets` prints it", function()
      local dump = ctx.dir .. "/dump.txt"
      ctx:config(string.format([[
        redis = { port = 7000, password = "pw" }
        slack = { enabled = true, channel = "ops" }
        dump_to = %q
      ]], dump))
      -- one walk, run by the rule over its config and here over the printed one
      local WALK = [[
        local function walk(lines, prefix, t)
          local n = 0
          for k, v in pairs(t) do
            n = n + 1
            if type(v) == "table" then walk(lines, prefix .. k .. ".", v)
            elseif type(v) == "number" then lines[#lines + 1] = prefix .. k .. "=" .. string.format("%.17g", v)
            else lines[#lines + 1] = prefix .. k .. "=" .. tostring(v) end
          end
          if n == 0 then lines[#lines + 1] = prefix .. "{}" end
          return lines
        end
      ]]
      ctx:rule("00-dump.lua", WALK .. [[
        local lines = walk({}, "", config)
        table.sort(lines)
        local f = assert(io.open(config.dump_to, "w"))
        f:write(table.concat(lines, "\n"), "\n")
        f:close()
      ]])
      assert.are.equal(0, (ctx:run("eventilator", table.unpack(SDOWN))))
      local out, rc = procs.sh(string.format("EVENTILATOR_CONF=%s EVENTILATOR_LOG=/dev/null %s config --secrets",
        procs.quote(ctx.conf), procs.quote(procs.build .. "/bin/eventilator")))
      assert.are.equal(0, rc, out)
      local want = assert(load(WALK .. " return walk(...)"))({}, "", require("cjson").decode(out))
      table.sort(want)
      assert.are.equal(table.concat(want, "\n") .. "\n", procs.read(dump))
      assert.truthy(procs.read(dump):find("hcloud.server_type=cx22", 1, true))
    end)

    it("keeps a section a rule removed or replaced, as a plain table would", function()
      ctx:rule("00-edit.lua", [[
        config.slack = nil
        config.sensu = { enabled = "mine" }
        config.sensu = config.sensu
        on("*", function()
          log.info("slack=%s sensu=%s webhook=%s", tostring(config.slack), config.sensu.enabled,
            tostring(config.webhook.enabled))
        end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.matches("slack=nil sensu=mine webhook=false", log)
    end)

    it("names file:line for a syntax error, an unknown key and a wrong type", function()
      -- a file that does not parse: nothing runs, exit 1 (Sentinel retries), said before any log is known
      ctx:config("slack = {")
      assert.are.equal(1, (ctx:run("eventilator", table.unpack(SDOWN))))
      assert.matches("eventilator%.conf:5: .*expected", ctx:stderr())
      -- a wrong setting: said in the log; nothing reads it here, so the call succeeds
      local cases = {
        { "\nslack = { webhok_url = 'x' }", "eventilator%.conf:5: slack%.webhok_url: unknown key, did you mean `webhook_url`%? " ..
          "%(known keys: enabled, webhook_url" },
        { "redis = { port = 'x' }", "eventilator%.conf:4: redis%.port: expected an integer, got string" },
        { "redis = 5", "eventilator%.conf:4: redis: expected a table, got number" },
      }
      for _, c in ipairs(cases) do
        ctx:config(c[1])
        local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
        assert.are.equal(0, rc, c[1])
        assert.matches("error: config [^\n]*" .. c[2], log)
      end
      ctx:config("budget = 'soon'")
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("eventilator%.conf:4: budget: expected a number, got string; budget is left at its default", log)
    end)
  end)

  describe("subcommands", function()
    it("check lists each file with its patterns and fails on a broken one", function()
      ctx:rule("a.lua", [[on({"+sdown", "-sdown"}, function() end)]])
      local rc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(0, rc)
      assert.matches("config  [^\n]*eventilator%.conf %(lua%)", out)
      assert.matches('ok      [^\n]*a%.lua: "%+sdown", "%-sdown"', out)
      ctx:rule("b.lua", "on(")
      ctx:rule("c.lua", "on('+sdown', function() end)\nerror('at load')\n")
      rc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(1, rc)
      assert.matches("FAILED  [^\n]*b%.lua:1:", out)
      assert.matches("FAILED  [^\n]*c%.lua:2: at load", out) -- raised while loading, not only a syntax error
      assert.matches("3 rule file%(s%), 2 failed", out)
    end)

    it("test prints ev as JSON and the handlers; --run runs them", function()
      ctx:rule("a.lua", "\n\non('+odown', function() log.info('ran for real') end)")
      local rc, log, out = ctx:run("eventilator", "test", "+odown", "master pod1 127.0.0.1 6379 #quorum 2/3")
      assert.are.equal(0, rc)
      assert.matches('"votes": 2', out)
      assert.matches('"quorum": 3', out)
      assert.matches("handlers for %+odown: 1\n  [^\n]*a%.lua:3", out)
      assert.falsy(log:find("ran for real"))
      rc, log, out = ctx:run("eventilator", "test", "--run", "--reconfig", "pod1", "leader", "start",
        "10.0.0.1", "6379", "10.0.0.2", "6380")
      assert.are.equal(0, rc)
      assert.matches('"role": "leader"', out)
      assert.falsy(log:find("ran for real"))
      rc = ctx:run("eventilator", "test", "+odown", "garbage")
      assert.are.equal(2, rc)
    end)

    it("test --run says it acts for real and shows every log line of the run on the terminal", function()
      ctx:config(string.format("log = { target = %q, level = 'info' }\nrules_dir = %q\nstate_dir = %q", ctx.log,
        ctx.rules, ctx.dir .. "/state"), true)
      ctx:rule("a.lua", "on('+odown', function() log.debug('debug detail') log.info('ran for real') end)")
      local args = { "+odown", "master pod1 127.0.0.1 6379 #quorum 2/3" }
      local rc, _, out = ctx:run("eventilator", "test", table.unpack(args))
      assert.are.equal(0, rc)
      assert.matches("nothing ran: %-%-run runs these handlers for real %(they write to the store, post to the receivers%)", out)
      rc, _, out = ctx:run("eventilator", "test", "--run", table.unpack(args))
      assert.are.equal(0, rc)
      assert.matches("running them for real %(the store, the receivers%)", out)
      assert.matches("debug: debug detail", ctx:stderr())
      assert.matches("info: ran for real", ctx:stderr())
      assert.falsy(ctx:logtext():find("debug detail", 1, true)) -- the log itself keeps its level
      local _, _, usage = ctx:run("eventilator", "--help")
      assert.matches("%-%-run runs them for real: they write to\n%s+the store and post to the receivers", usage)
    end)

    it("test suggests the event name a sign or a typo away", function()
      for _, c in ipairs({ { { "odown" }, "`%+odown`" }, { { "odown", "master pod1 127.0.0.1 6379 #quorum 2/3" }, "`%+odown`" },
                           { { "switch-master", "x" }, "`%+switch%-master`" } }) do
        local rc = ctx:run("eventilator", "test", table.unpack(c[1]))
        assert.are.equal(2, rc)
        assert.matches("'" .. c[1][1]:gsub("%-", "%%-") .. "' is not an event name; did you mean " .. c[2], ctx:stderr())
      end
    end)
  end)
end)
