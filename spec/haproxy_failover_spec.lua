-- haproxy-follow-master.lua through a real failover: a loopback
-- constellation (1 master, 2 replicas, 3 Sentinels running the built
-- binaries) behind a real HAProxy whose backend server points at the master.
-- Kill the master: the frontend answers from the new master, `show servers
-- state` has its address, and the repoint was sent once for three Sentinels
-- (once per failover: a loaded Sentinel may fail over a second time, and the
-- counts come from what the Sentinels logged). With docs/haproxy.md's role
-- check at `inter 1s`, in watch mode, HAProxy routes to the new master
-- because the rule forced it up, not once its checks passed.
local procs = require("procs")
local constellation = require("constellation")
local haproxy_proc = require("haproxy")
local watcher = require("watcher")

local CFG = require("hostless") -- the config the modules see

local haproxy = require("eventilator.haproxy")

local runner = require("runner")
local function count(text, plain) return runner.count(text, plain, true) end

local by_name = haproxy_proc.by_name

describe("haproxy-follow-master.lua through a real failover", function()
  it("repoints HAProxy to the new master, once for three Sentinels", function()
    local dir = procs.tmpdir()
    local rules, logf, conf = dir .. "/rules", dir .. "/eventilator.log", dir .. "/eventilator.conf"
    procs.shipped_rules(rules, "haproxy-follow-master.lua")
    local h
    local ok, c = pcall(constellation.start, { conf = conf, down_after = 3000, setup = function(c)
      h = haproxy_proc.start({ backends = { redis = { master = c.nodes[1].port } }, check = true })
      procs.write(conf, table.concat({
        string.format("log = { target = %q, level = \"debug\" }", logf),
        string.format("rules_dir = %q\nstate_dir = %q", rules, dir .. "/state"),
        string.format("redis = { port = %d, timeout = 1 }", c.store.port),
        string.format("haproxy = { socket = %q, backends = { %s = \"redis/master\" } }", h.socket, constellation.NAME),
      }, "\n") .. "\n")
    end })
    finally(function()
      if ok then c:stop() end
      if h then h.stop() end
      procs.rmtree(dir)
    end)
    assert(ok, c)
    local function fe(...) return procs.cli(h.frontend, ...) end
    procs.wait(function() return fe("role"):match("^master\n") ~= nil end, 20, "HAProxy to reach the master")

    local ok2, err = pcall(function()
      local old = c:kill_master()
      c:wait_failover(90)
      local _, raised, text = c:settled(function() return procs.read(logf) or "" end, 120)
      local d = c:did(raised)
      local new = d.promoted[#d.promoted] -- the last failover's
      assert.are_not.equal(old, new)
      procs.wait(function()
        return fe("role"):match("^master\n") ~= nil and fe("info", "server"):match("tcp_port:(%d+)") == tostring(new)
      end, 15, "the frontend to answer from the new master")
      CFG.haproxy = { socket = h.socket }
      local s = by_name(assert(haproxy.servers("redis"))).master
      assert.equal("127.0.0.1", s.addr)
      assert.equal(new, s.port)
      local switches = 0
      for _, sm in ipairs(constellation.summaries(text)) do
        if sm.event == "+switch-master" then switches = switches + 1 end
      end
      assert.equal(d.switches, switches, "every Sentinel ran the rule")
      local times = {}
      for _, p in ipairs(d.promoted) do times[p] = (times[p] or 0) + 1 end
      for p, n in pairs(times) do
        assert.equal(n, count(text, "haproxy: redis/master now 127.0.0.1:" .. p), "repointed once per failover")
      end
    end)
    if not ok2 then
      io.stderr:write("\n[haproxy] eventilator log:\n" .. (procs.read(logf) or ""):sub(-5000) ..
        "\n[haproxy] haproxy log:\n" .. (procs.read(h.log) or ""):sub(-3000) ..
        "\n[haproxy] sentinel logs:\n" .. c:sentinel_logs():sub(-4000) .. "\n")
      error(err, 0)
    end
  end)

  -- In watch mode, as issue 20 measured it. HAProxy's log names why a
  -- server changed state: "changed from CLI" for the rule's `health up`,
  -- "Layer7 check passed" for a check. Left to its checks, the server would
  -- come back UP only after `rise` (2) passes at the new address, `inter`
  -- (1 s) apart; the rule's `health up` follows its `set server ... addr`
  -- at once.
  it("with a role check at inter 1s, routes to the new master as soon as the rule repoints it", function()
    local w = watcher.new()
    w:rule("haproxy-follow-master.lua", procs.read(procs.src .. "/examples/rules/haproxy-follow-master.lua"))
    local h
    -- Sentinels that never fail over by themselves (down-after 60 s) and run
    -- no scripts: the spec asks for the failover once HAProxy has the dead
    -- master DOWN, so the rule always repoints a server its checks hold down.
    local ok, c = pcall(constellation.start, { conf = w.conf, down_after = 60000, scripts = false,
      setup = function(c)
        h = haproxy_proc.start({ backends = { redis = { master = c.nodes[1].port } }, check = "check inter 1s",
                                 role_check = true })
      end })
    finally(function()
      w:finish(30)
      if ok then c:stop() end
      if h then h.stop() end
    end)
    assert(ok, c)
    -- the Sentinels' ports are known once they run
    local sentinels = {}
    for i = 1, #c.sentinels do sentinels[i] = string.format("%q", c:sentinel_addr(i)) end
    w:config(table.concat({
      string.format("redis = { port = %d, timeout = 1 }", c.store.port),
      string.format("haproxy = { socket = %q, backends = { %s = \"redis/master\" } }", h.socket, c.name),
      string.format("watch = { sentinels = { %s } }", table.concat(sentinels, ", ")),
    }, "\n"))
    w:start()
    w:wait_log("connected and subscribed", #c.sentinels)
    local function fe(...) return procs.cli(h.frontend, ...) end
    local function master_state() return by_name(assert(haproxy.servers("redis"))).master.op_state end
    CFG.haproxy = { socket = h.socket }
    procs.wait(function() return fe("role"):match("^master\n") ~= nil and master_state() == 2 end, 30,
      "HAProxy to reach the master")

    local ok2, err = pcall(function()
      local mark = #(procs.read(h.log) or "") -- HAProxy's log from the kill on
      local old = c:kill_master()
      procs.wait(function() return master_state() == 0 end, 30, "HAProxy's check to find the master dead")
      assert.equal("OK", c:sentinel_cli(1, "sentinel", "failover", c.name))
      local new = c:wait_failover(90, old)
      procs.wait(function()
        return fe("role"):match("^master\n") ~= nil and fe("info", "server"):match("tcp_port:(%d+)") == tostring(new)
      end, 30, "the frontend to answer from the new master")
      -- redis/master's changes of state since the kill, each once (HAProxy
      -- writes every one to stderr twice: as a warning and as a log line).
      local changes = {}
      for line in (procs.read(h.log) or ""):sub(mark + 1):gmatch("[^\n]+") do
        local state = line:match("Server redis/master is (%u+)")
        if state and (#changes == 0 or changes[#changes].state ~= state) then
          changes[#changes + 1] = { state = state, line = line }
        end
      end
      assert.equal("DOWN", changes[1] and changes[1].state)
      assert.equal("UP", changes[2] and changes[2].state)
      assert.matches("changed from CLI", changes[2].line, 1, true)
      local s = by_name(assert(haproxy.servers("redis"))).master
      assert.equal(new, s.port)
      assert.equal(2, s.op_state)
      assert.equal(1, count(w:logtext(), "haproxy: redis/master now 127.0.0.1:" .. new), "repointed once")
    end)
    if not ok2 then
      io.stderr:write("\n[haproxy] watcher log:\n" .. w:logtext():sub(-5000) ..
        "\n[haproxy] haproxy log:\n" .. (procs.read(h.log) or ""):sub(-3000) ..
        "\n[haproxy] sentinel logs:\n" .. c:sentinel_logs():sub(-4000) .. "\n")
      error(err, 0)
    end
  end)
end)
