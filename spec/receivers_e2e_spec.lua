-- The receivers through a real failover: three redis-sentinel processes
-- (spec/support/constellation.lua) run the built binary with the default
-- rules, Alertmanager enabled (a real one) and the stream enabled (into the
-- constellation's store, which is config.redis).
local procs = require("procs")
local constellation = require("constellation")
local alertmanager = require("alertmanager")

local POD = constellation.NAME

local runner = require("runner")
local function count(text, plain) return runner.count(text, plain, true) end

-- XRANGE as a list of { id, fields }
local function entries(c, key)
  local out, l = {}, {}
  for x in (c:store_cli("XRANGE", key, "-", "+") .. "\n"):gmatch("([^\n]*)\n") do l[#l + 1] = x end
  -- redis-cli (no tty) prints the id, then field and value lines; the 6 fields are fixed
  local i = 1
  while i + 12 <= #l do
    local f = {}
    for k = i + 1, i + 11, 2 do f[l[k]] = l[k + 1] end
    out[#out + 1] = { id = l[i], fields = f }
    i = i + 13
  end
  return out
end

describe("receivers against a live Sentinel constellation", function()
  local am, c, dir

  after_each(function()
    if c then c:stop() end
    if am then am.stop() end
    procs.rmtree(dir)
  end)

  it("a failover: RedisMasterDown resolved, RedisFailover firing; the stream has each event once", function()
    am = alertmanager.start()
    dir = procs.tmpdir()
    local rules, log, conf = dir .. "/rules", dir .. "/eventilator.log", dir .. "/eventilator.conf"
    procs.shipped_rules(rules)
    os.execute("mkdir -p " .. procs.quote(dir .. "/state"))
    c = constellation.start{ conf = conf, setup = function(k)
      procs.write(conf, table.concat({
        string.format("log = { target = %q, level = \"debug\" }", log),
        string.format("rules_dir = %q", rules),
        string.format("state_dir = %q", dir .. "/state"),
        string.format("redis = { host = \"127.0.0.1\", port = %d, timeout = 1 }", k.store.port),
        string.format("alertmanager = { enabled = true, urls = { %q }, labels = { cluster = \"e2e\" } }", am.url),
        "stream = { enabled = true }",
      }, "\n") .. "\n")
    end }
    local ok, err = xpcall(function()
      local old = c:kill_master()
      local new = c:wait_failover(90, old)
      procs.wait(function()
        return count(procs.read(log) or "", "info: +sdown slave 127.0.0.1:" .. old) >= 3
      end, 30, "the three sentinels' +sdown of the old master")
      local _, raised, down, failovers, text, stream = c:settled(function()
        return am.find("RedisMasterDown"), am.find("RedisFailover"), procs.read(log) or "",
          entries(c, "eventilator:events")
      end, 90)

      -- Alertmanager: the old master's RedisMasterDown is resolved, the failover is firing.
      assert.same({}, down)
      -- (a loaded machine can make the Sentinels fail over twice: one alert per new master)
      local f
      for _, a in ipairs(failovers) do
        if a.labels.instance == "127.0.0.1:" .. new then f = a end
      end
      assert.is_table(f, "no RedisFailover alert for 127.0.0.1:" .. new)
      assert.equal(POD, f.labels.pod)
      assert.equal("e2e", f.labels.cluster)
      assert.equal("master", f.labels.role)
      assert.equal("active", f.status.state)
      assert.is_truthy(text:find("info: +odown master " .. POD, 1, true), "no +odown was raised")
      for _, s in ipairs(constellation.summaries(text)) do assert.equal(0, s.exit, s.line) end

      -- The stream: every event of the failover, and what several Sentinels
      -- report only once (dedupe.once claims the event's identity). A Sentinel
      -- that tries again (a new epoch) raises +try-failover again: that is a
      -- new event, and dedupe.once lets the same Sentinel through by design.
      local times, names = {}, {}
      for _, e in ipairs(stream) do
        local k = e.fields.name .. " " .. e.fields.text
        times[k] = (times[k] or 0) + 1
        names[e.fields.name] = true
        if e.fields.name ~= "+new-epoch" and e.fields.name ~= "+vote-for-leader" then -- no master named
          assert.equal(POD, e.fields.pod, k)
        end
      end
      for _, name in ipairs({ "+sdown", "+odown", "+try-failover", "+elected-leader", "+selected-slave",
                              "+failover-state-reconf-slaves" }) do
        assert.is_true(names[name], "missing in the stream: " .. name)
      end
      -- the failover away from the master killed: to `new`, or, when the Sentinels failed over
      -- twice, to the replica `new` took over from; the old master's +sdown as a replica names
      -- the master as each Sentinel knew it then
      local first, sdown_slave = nil, {}
      for _, e in ipairs(raised) do
        first = first or tonumber(e.name == "+switch-master" and
          e.text:match(string.format("^%s 127%%.0%%.0%%.1 %d 127%%.0%%.0%%.1 (%%d+)$", POD, old)))
        if e.name == "+sdown" and e.text:find(string.format("slave 127.0.0.1:%d 127.0.0.1 %d @ ", old, old), 1, true) == 1 then
          sdown_slave[e.name .. " " .. e.text] = true
        end
      end
      assert.is_number(first, "no +switch-master away from " .. old)
      local once = {
        string.format("+switch-master %s 127.0.0.1 %d 127.0.0.1 %d", POD, old, first),
        string.format("+sdown master %s 127.0.0.1 %d", POD, old),
        string.format("+promoted-slave slave 127.0.0.1:%d 127.0.0.1 %d @ %s 127.0.0.1 %d", first, first, POD, old),
        string.format("+failover-end master %s 127.0.0.1 %d", POD, old),
      }
      assert.is_not_nil(next(sdown_slave), "no +sdown of the old master as a replica")
      for k in pairs(sdown_slave) do once[#once + 1] = k end
      -- Once: as often as the Sentinel that claimed it first raised it (dedupe.once lets its own
      -- later reports through: one that flaps raised it twice); a client-reconfig call is once.
      for _, k in ipairs(once) do
        local by = {}
        for _, e in ipairs(raised) do
          if e.name .. " " .. e.text == k then by[e.sentinel] = (by[e.sentinel] or 0) + 1 end
        end
        if next(by) == nil then
          assert.equal(1, times[k], k)
        else
          local seen = false
          for _, n in pairs(by) do seen = seen or n == times[k] end
          assert.is_true(seen, string.format("%s: in the stream %s times, raised by the Sentinels %s", k,
            tostring(times[k]), require("cjson").encode(by)))
        end
      end
      -- the leader's and the observers' client-reconfig are one event: one entry, whoever was first
      local reconfigs = 0
      for _, role in ipairs({ "leader", "observer" }) do
        reconfigs = reconfigs + (times[string.format("client-reconfig %s %s start 127.0.0.1 %d 127.0.0.1 %d",
          POD, role, old, first)] or 0)
      end
      assert.equal(1, reconfigs, "client-reconfig entries")
    end, debug.traceback)
    if not ok then
      local st = {}
      for _, e in ipairs(entries(c, "eventilator:events")) do st[#st + 1] = e.fields.name .. " " .. e.fields.text end
      io.stderr:write("\n[receivers-e2e] the stream:\n" .. table.concat(st, "\n") .. "\n")
      io.stderr:write("\n[receivers-e2e] log tail:\n" .. (procs.read(log) or ""):sub(-5000) .. "\n")
      error(err, 0)
    end
  end)
end)
