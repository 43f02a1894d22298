-- A silence through a real failover: three redis-sentinel processes
-- (spec/support/constellation.lua) monitor pod1 (a master and two replicas)
-- and pod2 (a master alone), and run the built binary with the default
-- rules, every receiver enabled against the stand-ins (httpd.py for Slack,
-- PagerDuty, Alertmanager and the webhook; tcpd.py for Sensu) and the
-- stream and failover metrics into the store. A silence for pod1 is added
-- with the CLI; then pod1's master and pod2's master die. pod1 fails over
-- and pages nobody; pod2 (no replica to promote) pages; the reactions
-- record pod1's failover all the same.
local procs = require("procs")
local constellation = require("constellation")
local standin = require("standin")
local json = require("cjson")

local KEY = "0123456789abcdef0123456789abcdef"

local function count(text, plain)
  local n, i = 0, 1
  while true do
    local s, e = text:find(plain, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

describe("a silence through a real failover", function()
  local c, S, dir, sensu_pid

  after_each(function()
    if c then c:stop() end
    if S then S.stop() end
    procs.kill(sensu_pid)
    procs.rmtree(dir)
  end)

  it("pages nothing for the silenced pod and pages for another; the reactions still run", function()
    S = standin.start()
    dir = procs.tmpdir()
    local rules, log, conf = dir .. "/rules", dir .. "/eventilator.log", dir .. "/eventilator.conf"
    local sensu_log = dir .. "/sensu.jsonl"
    sensu_pid = procs.spawn(string.format("python3 %s --mode sensu --port 0 --log %s --ready %s",
      procs.quote(procs.src .. "/spec/support/tcpd.py"), procs.quote(sensu_log),
      procs.quote(dir .. "/sensu.ready")), dir .. "/sensu.out")
    local sensu_port = procs.ready_port(sensu_pid, dir .. "/sensu.ready", "tcpd.py sensu", dir .. "/sensu.out")
    procs.shipped_rules(rules)
    os.execute("mkdir -p " .. procs.quote(dir .. "/state"))
    c = constellation.start{ conf = conf, masters = 2, setup = function(k)
      procs.write(conf, table.concat({
        string.format("log = { target = %q, level = \"debug\" }", log),
        string.format("rules_dir = %q", rules),
        string.format("state_dir = %q", dir .. "/state"),
        string.format("redis = { host = \"127.0.0.1\", port = %d, timeout = 1 }", k.store.port),
        string.format("slack = { enabled = true, webhook_url = %q }", S.url .. "/slack"),
        string.format("sensu = { enabled = true, port = %d }", sensu_port),
        string.format("pagerduty = { enabled = true, routing_key = %q, url = %q }", KEY,
          S.url .. "/pagerduty/v2/enqueue"),
        string.format("alertmanager = { enabled = true, urls = { %q } }", S.url .. "/am"),
        string.format("webhook = { enabled = true, url = %q }", S.url .. "/hook"),
        "stream = { enabled = true }",
      }, "\n") .. "\n")
    end }

    -- the operator, before the planned work
    local out, rc = procs.sh(string.format("EVENTILATOR_CONF=%s %s silence add --pod pod1 --for 10m "
      .. "--comment 'planned failover' --author ops 2>/dev/null", procs.quote(conf),
      procs.quote(procs.build .. "/bin/eventilator")))
    assert.equal(0, rc, out)
    local id = assert(out:match("^(%x+)\n$"), out)

    local ok, err = xpcall(function()
      local pod2 = c.masters[2].node
      local old = c:kill_master()
      procs.kill(pod2.rpid, "KILL")
      pod2.up = false
      local new = c:wait_failover(90, old)
      -- pod2 has no replica: its odown pages (every Sentinel may post it)
      procs.wait(function()
        for _, r in ipairs(S.requests()) do
          if r.json and r.json.dedup_key == "redis/pod2/odown" and r.json.event_action == "trigger" then
            return true
          end
        end
      end, 60, "PagerDuty's trigger for pod2")
      procs.wait(function()
        return count(procs.read(log) or "", "info: +sdown slave 127.0.0.1:" .. old) >= 3
      end, 30, "the three sentinels' +sdown of pod1's old master")
      c:wait_scripts_idle(90)

      local text = procs.read(log) or ""
      assert.is_truthy(text:find("info: +odown master pod1 ", 1, true), "no +odown was raised for pod1")
      assert.is_truthy(text:find(string.format("info: +switch-master pod1 127.0.0.1 %d 127.0.0.1 ", old), 1, true))
      for _, s in ipairs(constellation.summaries(text)) do assert.equal(0, s.exit, s.line) end

      -- pod1: nothing reached any receiver, and each one said which silence held it
      local by = { slack = {}, pagerduty = {}, alertmanager = {}, webhook = {} }
      for _, r in ipairs(S.requests()) do
        local body = r.body or ""
        assert.is_nil(body:find("pod1", 1, true), r.path .. " got " .. body:sub(1, 300))
        local who = (r.path:match("^/(%a+)") or "?"):gsub("^am$", "alertmanager"):gsub("^hook$", "webhook")
        if by[who] then by[who][#by[who] + 1] = body end
      end
      local sensu = {}
      for l in (procs.read(sensu_log) or ""):gmatch("[^\n]+") do
        local r = json.decode(l)
        assert.not_equal("pod-pod1", type(r.json) == "table" and r.json.source, r.data)
        sensu[#sensu + 1] = r.data
      end
      for _, r in ipairs({ "slack", "sensu", "pagerduty", "alertmanager", "webhook" }) do
        assert.is_truthy(text:find("info: " .. r .. ": [^\n]* pod1 silenced by " .. id .. " %(planned failover, by ops,"),
          "no silenced line from " .. r)
      end

      -- pod2: every receiver paged
      for who, bodies in pairs(by) do
        assert.is_true(#bodies > 0, who .. " sent nothing for pod2")
        assert.is_truthy(table.concat(bodies):find("pod2", 1, true), who)
      end
      assert.is_true(#sensu > 0, "sensu got nothing for pod2")

      -- the reactions did not skip: pod1's failover is in the stream and in the metrics. A loaded
      -- machine's Sentinels may fail over twice (old -> a -> new): the first switch starts at old.
      local stream = c:store_cli("XRANGE", "eventilator:events", "-", "+")
      assert.matches(string.format("pod1 127%%.0%%.0%%.1 %d 127%%.0%%.0%%.1 %%d+", old), stream)
      assert.matches(string.format("pod1 127%%.0%%.0%%.1 %%d+ 127%%.0%%.0%%.1 %d", new), stream)
      assert.not_equal("0", c:store_cli("ZCARD", "failovers:pod1:log"))
    end, debug.traceback)
    if not ok then
      io.stderr:write("\n[silence-e2e] requests:\n")
      for _, r in ipairs(S.requests()) do io.stderr:write(r.path, " ", (r.body or ""):sub(1, 200), "\n") end
      io.stderr:write("\n[silence-e2e] log tail:\n" .. (procs.read(log) or ""):sub(-6000) .. "\n")
      error(err, 0)
    end
  end)
end)
