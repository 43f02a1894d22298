-- haproxy-follow-master.lua through a real failover: a loopback
-- constellation (1 master, 2 replicas, 3 Sentinels running the built
-- binaries) behind a real HAProxy whose backend server points at the master.
-- Kill the master: the frontend answers from the new master, `show servers
-- state` has its address, and the repoint was sent once for three Sentinels
-- (once per failover: a loaded Sentinel may fail over a second time, and the
-- counts come from what the Sentinels logged).
local procs = require("procs")
local constellation = require("constellation")
local haproxy_proc = require("haproxy")

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
end)
