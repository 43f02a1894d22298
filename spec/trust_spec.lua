-- Every call holds under hostile rules, kills and tampering (issue: trust).
-- Each `it` is a defect that the call used to show; the specs run the built
-- binary as Sentinel does (runner.lua), as root in CI: other owners come
-- from `chown nobody`.
local runner = require("runner")
local procs = require("procs")

local SDOWN = { "+sdown", "master pod1 127.0.0.1 6379" }
local count = runner.count
local q = procs.quote

local function sh(cmd)
  local out, rc = procs.sh(cmd)
  assert(rc == 0, cmd .. ": " .. tostring(out))
  return out
end

local function mode(path)
  return (sh("stat -c %a " .. q(path)):gsub("%s+", ""))
end

describe("trust", function()
  local ctx
  before_each(function() ctx = runner.new() end)
  after_each(function() ctx:cleanup() end)

  describe("the time budget", function()
    it("covers a rule file whose top level blocks, and names the file", function()
      ctx:config("budget = 1")
      ctx:rule("10-sleeps.lua", 'os.execute("sleep 30 >/dev/null 2>&1")\non("+sdown", function() end)\n')
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("time budget of 1 s exceeded, stopped by the watchdog; exit 1 %(/[^)]*/10%-sleeps%.lua%)", log)
    end)

    it("covers a pattern match that backtracks for ever at a file's top level", function()
      ctx:config("budget = 1")
      ctx:rule("10-find.lua", 'string.find(string.rep("a", 40), string.rep("a*", 40) .. "b")\n')
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("stopped by the watchdog; exit 1 %([^)]*10%-find%.lua%)", log)
    end)

    it("refuses a budget that is not finite, not positive, or past 55 s, with file:line", function()
      ctx:rule("a.lua", 'on("+sdown", function() log.info("A fired") end)\n')
      for _, v in ipairs({ "0/0", "1/0", "3600", "0", "-1", "56" }) do
        ctx:config("budget = " .. v) -- line 4: runner.lua writes three lines first
        local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
        -- the default budget runs the handlers; exit 1 keeps Sentinel retrying until the file is fixed
        assert.are.equal(1, rc, v)
        assert.matches("eventilator%.conf:4: budget: expected seconds above 0 and at most 55", log)
        assert.matches("A fired", log)
        local crc, _, out = ctx:run("eventilator", "check")
        assert.are.equal(1, crc, v)
        assert.matches("FAILED  config [^\n]*eventilator%.conf:4: budget: expected seconds", out)
      end
      ctx:config("budget = 55")
      assert.are.equal(0, (ctx:run("eventilator", table.unpack(SDOWN))))
    end)
  end)

  describe("files others could have written", function()
    before_each(function()
      ctx:rule("10-a.lua", 'on("+sdown", function() log.info("A fired") end)\n')
      ctx:rule("20-b.lua", 'on("+sdown", function() log.info("B fired") end)\n')
    end)

    it("refuses a rule file writable by others, runs the rest, and exits 1", function()
      sh("chmod 0666 " .. q(ctx.rules .. "/10-a.lua"))
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rule file skipped: [^\n]*/10%-a%.lua: refused: [^\n]*/10%-a%.lua is writable by others " ..
        "%(mode 666%); fix: chmod go%-w", log)
      assert.are.equal(0, count(log, "A fired"))
      assert.are.equal(1, count(log, "B fired"))
      local crc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(1, crc)
      assert.matches("FAILED  [^\n]*10%-a%.lua: refused", out)
    end)

    it("refuses a rule file writable by its group or owned by another user", function()
      sh("chmod 0664 " .. q(ctx.rules .. "/10-a.lua"))
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("is writable by its group %(mode 664%)", log)
      sh("chmod 0644 " .. q(ctx.rules .. "/10-a.lua") .. " && chown nobody " .. q(ctx.rules .. "/10-a.lua"))
      rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("10%-a%.lua is owned by uid %d+, not by root or uid 0[^\n]*; fix: chown 0 ", log)
      assert.are.equal(0, count(log, "A fired"))
    end)

    it("judges a symlink by its target", function()
      sh("mkdir -p " .. q(ctx.dir .. "/elsewhere"))
      procs.write(ctx.dir .. "/elsewhere/c.lua", 'on("+sdown", function() log.info("C fired") end)\n')
      sh("ln -s " .. q(ctx.dir .. "/elsewhere/c.lua") .. " " .. q(ctx.rules .. "/30-c.lua"))
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.are.equal(1, count(log, "C fired"))
      sh("chmod 0666 " .. q(ctx.dir .. "/elsewhere/c.lua"))
      rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("30%-c%.lua: refused: ", log)
    end)

    it("refuses a rules folder others can write: no rules, exit 1, check fails", function()
      sh("chmod 0777 " .. q(ctx.rules))
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rules folder [^\n]*/rules: refused: [^\n]* is writable by others %(mode 777%); fix: chmod go%-w", log)
      assert.are.equal(0, count(log, "A fired"))
      local crc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(1, crc)
      assert.matches("FAILED  rules folder", out)
    end)

    it("refuses a config file others can write, with exit 1 (the operator can fix it before the retries end)", function()
      sh("chmod 0666 " .. q(ctx.conf))
      local rc = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("config [^\n]*eventilator%.conf refused: [^\n]*; fix: chmod go%-w", ctx:stderr())
      local crc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(1, crc)
      assert.matches("FAILED", out)
    end)

    it("can be turned off for development with strict_modes = false", function()
      ctx:config("strict_modes = false")
      sh("chmod 0666 " .. q(ctx.rules .. "/10-a.lua") .. " && chmod 0777 " .. q(ctx.rules))
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.are.equal(1, count(log, "A fired"))
    end)

    it("fails the call and `check` when the rules folder is missing", function()
      ctx:config(string.format("rules_dir = %q", ctx.dir .. "/nope"))
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rules folder [^\n]*/nope: No such file or directory", log)
      local crc, _, out = ctx:run("eventilator", "check")
      assert.are.equal(1, crc)
      assert.matches("FAILED  rules folder [^\n]*/nope", out)
    end)
  end)

  describe("the compiled-rule cache", function()
    local path, entry
    local EVIL = 'on("+sdown", function() log.info("EVIL ran") end)\n'

    -- 64-bit FNV-1a over little-endian 8-byte words, then the tail bytes, as
    -- cache.c checks its entries (fnv.h evl_fnv_words; integers wrap in Lua 5.4)
    local function fnv(s)
      local h, i = 0xcbf29ce484222325, 1
      while i + 7 <= #s do h = (h ~ string.unpack("<i8", s, i)) * 0x100000001b3; i = i + 8 end
      for j = i, #s do h = (h ~ s:byte(j)) * 0x100000001b3 end
      return h
    end

    -- An entry for the rule file's current identity whose bytecode is EVIL's:
    -- what anyone who can write the cache folder could make.
    local function plant()
      local legit = assert(procs.read(entry))
      local magic, key = string.unpack("<c8I8", legit)
      local bc = string.dump(assert(load(EVIL, "@" .. path)))
      procs.write(entry, string.pack("<c8I8I8I8I8", magic, key, fnv(bc), #bc, 0) .. bc)
    end

    before_each(function()
      path = ctx.rules .. "/10-a.lua"
      ctx:rule("10-a.lua", 'on("+sdown", function() log.info("benign ran") end)\n')
      assert.are.equal(0, (ctx:run("eventilator", table.unpack(SDOWN)))) -- compiles, fills the cache
      entry = (sh("ls " .. q(ctx.dir .. "/state/rules-cache") .. "/*.luac"):gsub("%s+$", ""))
    end)

    it("creates state_dir and its files for this user alone", function()
      assert.are.equal("700", mode(ctx.dir .. "/state"))
      assert.are.equal("700", mode(ctx.dir .. "/state/rules-cache"))
      assert.are.equal("600", mode(entry))
      ctx:rule("20-fails.lua", 'on("+sdown", function() return nil, "down" end)\n')
      assert.are.equal(1, (ctx:run("eventilator", table.unpack(SDOWN))))
      assert.are.equal("700", mode(ctx.dir .. "/state/retries"))
      local rec = (sh("ls " .. q(ctx.dir .. "/state/retries") .. "/*"):gsub("%s+$", ""))
      assert.are.equal("600", mode(rec))
    end)

    it("keeps one bundle for the folder; a changed file never meets its old bytecode", function()
      ctx:rule("20-b.lua", 'on("+sdown", function() log.info("b one") end)\n')
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, count(log, "b one"))
      local bundles = sh("ls " .. q(ctx.dir .. "/state/rules-cache"))
      assert.are.equal(1, select(2, bundles:gsub("%.luac\n", "")), bundles)
      ctx:rule("20-b.lua", 'on("+sdown", function() log.info("b two") end)\n')
      _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, count(log, "b one"))
      assert.are.equal(1, count(log, "b two"))
      assert.are.equal(1, count(log, "benign ran"))
      -- a bundle cut short (a crash mid-write): what is missing is compiled again
      local bytes = assert(procs.read(entry))
      procs.write(entry, bytes:sub(1, #bytes - 7))
      local rc
      rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.are.equal(1, count(log, "b two"))
      assert.are.equal(1, count(log, "benign ran"))
      assert.are.equal(#bytes, #assert(procs.read(entry))) -- and the bundle is whole again
    end)

    it("runs a planted entry only when this user wrote it (the plant itself is sound)", function()
      plant()
      sh("chmod 0600 " .. q(entry))
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, count(log, "EVIL ran")) -- root could always run anything: the spec's plant works
    end)

    it("ignores an entry owned by someone else", function()
      plant()
      sh("chown nobody " .. q(entry) .. " && chmod 0600 " .. q(entry))
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, count(log, "EVIL ran"))
      assert.are.equal(1, count(log, "benign ran"))
    end)

    it("ignores an entry others can write", function()
      plant()
      sh("chmod 0666 " .. q(entry))
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, count(log, "EVIL ran"))
      assert.are.equal(1, count(log, "benign ran"))
    end)

    it("ignores the cache in a folder others can write, or owned by someone else", function()
      plant()
      sh("chmod 0600 " .. q(entry) .. " && chmod 0777 " .. q(ctx.dir .. "/state/rules-cache"))
      local _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, count(log, "EVIL ran"))
      sh("chmod 0700 " .. q(ctx.dir .. "/state/rules-cache") .. " && chmod 0777 " .. q(ctx.dir .. "/state"))
      _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, count(log, "EVIL ran"))
      sh("chmod 0700 " .. q(ctx.dir .. "/state") .. " && chown nobody " .. q(ctx.dir .. "/state"))
      _, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, count(log, "EVIL ran"))
      assert.are.equal(1, count(log, "benign ran"))
    end)
  end)

  describe("kills and exits", function()
    local FLAG
    before_each(function()
      -- the second call of a pair stands in for Sentinel's retry, which comes script-retry-delay later
      ctx:config("script_retry_delay = 0")
      FLAG = ctx.dir .. "/flag"
      -- handler 2 kills its own process the first time, succeeds once the flag exists
      ctx:rule("a.lua", string.format([[
        on("+sdown", function() log.info("A fired") end)
        on("+sdown", function()
          if io.open(%q) then log.info("B fired") return true end
          local pid = io.open("/proc/self/stat"):read("l"):match("^(%%d+)")
          os.execute("kill -" .. (io.open(%q) and io.open(%q):read("l") or "TERM") .. " " .. pid)
          while true do end
        end)
      ]], FLAG, ctx.dir .. "/sig", ctx.dir .. "/sig"))
    end)

    for _, sig in ipairs({ "TERM", "KILL" }) do
      it("keeps handler 1's success when SIG" .. sig .. " ends the call after it", function()
        procs.write(ctx.dir .. "/sig", sig)
        local rcs = ctx:calls({ "call", "touch " .. q(FLAG), "call" })
        assert.are.same({ sig == "TERM" and 1 or 137, 0 }, rcs)
        local log = ctx:logtext()
        assert.are.equal(1, count(log, "A fired"))
        assert.are.equal(1, count(log, "B fired"))
        if sig == "TERM" then
          assert.are.equal(1, count(log, "stopped by SIGTERM; handlers that succeeded are recorded; exit 1"))
        end
      end)
    end

    it("runs every handler of 16 identical calls, the first still running: a repeat is not a retry", function()
      -- Sentinel's own script-retry-delay (30 s): a call that ended a moment ago was not retried yet
      ctx:config("")
      -- The barrier: the one call that takes `hold` (rename is atomic) stops in handler B, with A's
      -- success already on its locked record, until the spec creates `release`.
      ctx:rule("a.lua", string.format([[
        on("+sdown", function() log.info("A fired") end)
        on("+sdown", function()
          local pid = io.open("/proc/self/stat"):read("l"):match("^(%%d+)")
          if os.rename(%q, %q .. pid) then
            while not io.open(%q) do os.execute("sleep 0.02") end
          end
          return nil, "store down"
        end)
      ]], ctx.dir .. "/hold", ctx.dir .. "/held.", ctx.dir .. "/release"))
      local one = "EVENTILATOR_CONF=" .. q(ctx.conf) .. " " .. q(procs.build .. "/bin/eventilator") ..
        " +sdown 'master pod1 127.0.0.1 6379' 2>/dev/null"
      procs.write(ctx.dir .. "/hold", "")
      local first = procs.spawn("sh -c " .. q(one))
      procs.wait(function() return sh("ls " .. q(ctx.dir)):find("held%.") ~= nil end, 30, "the first call at the barrier")
      -- fifteen more, one after another (as Sentinel's fork loop starts them) and at once
      local script = {}
      for i = 1, 7 do script[i] = one end
      for i = 8, 15 do script[i] = "(" .. one .. ") &" end
      sh("sh -c " .. q(table.concat(script, "\n") .. "\nwait"))
      assert.are.equal(15, count(ctx:logtext(), "handlers=2 failed=1"))
      procs.write(ctx.dir .. "/release", "")
      procs.wait(function() return count(ctx:logtext(), "handlers=2 failed=1") == 16 end, 30, "the first call's end")
      local log = ctx:logtext()
      assert.are.equal(16, count(log, "A fired"), log)
      assert.are.equal(0, count(log, "retry of an earlier call"), log)
      -- each failed call left its record: Sentinel's 16 retries each take one
      local n = 0
      for _ in sh("ls " .. q(ctx.dir .. "/state/retries")):gmatch("%S+") do n = n + 1 end
      assert.are.equal(16, n)
      procs.kill(first)
    end)

    it("keys the record by EVENTILATOR_DELIVERY when the watcher sets it", function()
      ctx:rule("a.lua", string.format([[
        on("+sdown", function() log.info("A fired") end)
        on("+sdown", function() if not io.open(%q) then return nil, "flag missing" end end)
      ]], FLAG))
      ctx.env.EVENTILATOR_DELIVERY = "w1-42"
      assert.are.same({ 1 }, ctx:calls({ "call" }))
      assert.are.same({ 1 }, ctx:calls({ "call" })) -- another parent, same delivery: its retry
      local log = ctx:logtext()
      assert.are.equal(1, count(log, "A fired"))
      assert.matches("retry of an earlier call with delivery id w1%-42: 1 handler", log)
      ctx.env.EVENTILATOR_DELIVERY = "w1-43" -- a new event
      assert.are.same({ 1 }, ctx:calls({ "call" }))
      assert.are.equal(2, count(ctx:logtext(), "A fired"))
    end)

    it("makes os.exit in a rule an error that fails the handler", function()
      ctx:rule("a.lua", [[
        on("+sdown", function() return nil, "store down" end)
        on("+sdown", function() os.exit(0) end)
        on("+sdown", function() log.info("C fired") end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rule [^\n]*a%.lua:2 failed: [^\n]*os%.exit is not available to rules", log)
      assert.matches("handlers=3 failed=2", log)
      assert.are.equal(1, count(log, "C fired"))
    end)

    it("turns error values into text protected and bounded", function()
      ctx:config("budget = 6")
      ctx:rule("a.lua", [[
        local raising = setmetatable({}, { __tostring = function() error("boom") end })
        local looping = setmetatable({}, { __tostring = function() while true do end end })
        local huge = setmetatable({}, { __tostring = function() return string.rep("x", 100000) end })
        on("+sdown", function() error(raising) end)
        on("+sdown", function() error(looping) end)
        on("+sdown", function() return nil, raising end)
        on("+sdown", function() return nil, looping end)
        on("+sdown", function() return nil, huge end)
        on("+sdown", function() return false, "why" end)
        on("+sdown", function() log.info("last fired") end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.are.equal(0, count(log, "watchdog"))
      assert.are.equal(1, count(log, "last fired"))
      assert.are.equal(4, count(log, "a table value whose __tostring failed"))
      assert.matches("a%.lua:8 failed: returned nil, x+%.%.%. %(100000 bytes%)", log)
      assert.matches("a%.lua:9 failed: returned false, why", log)
      assert.matches("handlers=7 failed=6", log)
    end)
  end)

  describe("memory", function()
    it("fails a handler past memory_limit and still runs the next one", function()
      ctx:config("memory_limit = 16")
      ctx:rule("a.lua", [[
        on("+sdown", function()
          local t = {}
          for i = 1, 1e8 do t[i] = string.rep("x", 64) .. i end
        end)
        on("+sdown", function() log.info("B fired") end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc)
      assert.matches("rule [^\n]*a%.lua:1 failed: memory limit of 16 MiB reached", log)
      assert.are.equal(1, count(log, "B fired"))
      ctx:config("memory_limit = 0")
      local rc0, log0 = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc0)
      assert.matches("memory_limit: expected MiB from 1 to 65536, got 0", log0)
    end)
  end)

  describe("the lean/full handover", function()
    it("runs a redis-only handler of a file with an http handler in the start-up binary", function()
      ctx:rule("a.lua", [[
        on("+odown", function(ev)
          return http.request{ url = "http://127.0.0.1:1/" .. ev.pod }
        end)
        on("+sdown", function(ev)
          log.info("sdown handler for %s", ev.pod)
        end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(0, rc)
      assert.matches("sdown handler for pod1", log)
      assert.are.equal(0, count(log, "runtime=full"))
      rc, log = ctx:run("eventilator", "+odown", "master pod1 127.0.0.1 6379 #quorum 2/2")
      assert.are.equal(1, rc) -- port 1 refuses
      assert.matches("runtime=full %(a matching rule uses json or http%)", log)
    end)

    it("still hands over when a handler reaches http through a helper the scan cannot see", function()
      ctx:rule("a.lua", [[
        local function post(pod) return http.request{ url = "http://127.0.0.1:1/" .. pod } end
        on("+sdown", function() log.info("A fired") end)
        on("+sdown", function(ev) return post(ev.pod) end)
      ]])
      local rc, log = ctx:run("eventilator", table.unpack(SDOWN))
      assert.are.equal(1, rc) -- port 1 refuses
      assert.are.equal(1, count(log, "A fired"))
      assert.matches("runtime=full %([^\n]*a%.lua:3%)", log)
    end)
  end)
end)
