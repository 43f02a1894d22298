-- The README's "page once" rule, copied out of README.md by this spec (so the
-- README cannot drift from what is tested), on a real failover of three
-- Sentinels in script mode: every Sentinel that raises +odown runs the rule,
-- and the pager (an HTTP stand-in) gets one page per +odown event, however
-- many Sentinels reported it and whatever votes each counted. Its own file: a
-- failover on a loaded machine can take minutes, and each spec file has its
-- own time limit.
local procs = require("procs")
local constellation = require("constellation")
local json = require("cjson")

local HTTPD = procs.src .. "/spec/support/httpd.py"

-- The ```lua block of README.md whose first line says "page once".
local function readme_rule()
  local readme = assert(procs.read(procs.src .. "/README.md"))
  for block in readme:gmatch("```lua\n(.-)```") do
    if block:match("^[^\n]*page once") then return block end
  end
  error("README.md has no ```lua block whose first line says \"page once\"")
end

describe("the README's page-once rule", function()
  it("pages once per +odown on a real failover of three Sentinels", function()
    local rule = readme_rule()
    assert.matches('on%("%+odown"', rule)
    local dir = procs.tmpdir()
    local conf, rules = dir .. "/eventilator.conf", dir .. "/rules"
    local pages_log = dir .. "/pages.jsonl"
    os.execute("mkdir -p " .. procs.quote(rules))
    procs.write(rules .. "/50-page.lua", rule)
    local httpd = procs.spawn(string.format("python3 %s 0 --ready %s --log %s", procs.quote(HTTPD),
      procs.quote(dir .. "/httpd.ready"), procs.quote(pages_log)), dir .. "/httpd.out")
    local pager = procs.ready_port(httpd, dir .. "/httpd.ready", "the pager stand-in", dir .. "/httpd.out")
    local c
    local ok, err = pcall(function()
      c = constellation.start{ conf = conf, setup = function(cc)
        procs.write(conf, table.concat({
          string.format("log = { target = %q, level = \"debug\" }", dir .. "/eventilator.log"),
          string.format("rules_dir = %q", rules), string.format("state_dir = %q", dir .. "/state"),
          string.format("redis = { host = \"127.0.0.1\", port = %d, timeout = 5 }", cc.store.port),
          string.format("pager = { url = \"http://127.0.0.1:%d/page\" }", pager),
        }, "\n") .. "\n")
      end }
      -- One Sentinel with a quorum of its own (SENTINEL SET, as an operator may): its +odown
      -- ends "#quorum 3/3" while the others' end "#quorum 2/2" or "3/2", so the reports of
      -- the one event differ whatever the timing (the votes alone differ on most runs).
      assert.equal("OK", c:sentinel_cli(3, "sentinel", "set", constellation.NAME, "quorum", "3"))
      c:wait_scripts_idle(60)
      c:kill_master()
      -- generous: on a loaded machine (the sanitized build) Sentinels may enter TILT for 30 s
      c:wait_failover(180)

      -- The +odown events the Sentinels raised, from their own logs: one event per master
      -- address, whatever "#quorum" each reporter wrote (a loaded Sentinel may also see the
      -- new master down for a moment: a second event, and a second page is right).
      local function raised()
        local events, n, reports = {}, 0, {}
        for i = 1, #c.sentinels do
          for what, votes in c:sentinel_logs(i):gmatch("# %+odown (master %S+ %S+ %d+) (#quorum %S+)") do
            if not events[what] then
              events[what] = true
              n = n + 1
            end
            reports[#reports + 1] = string.format("sentinel %d: %s %s", i, what, votes)
          end
        end
        return n, reports
      end
      -- Until every script of every event raised so far has run: a Sentinel that raises one
      -- more while we wait queues its script too, so wait again.
      local n, reports
      repeat
        n = raised()
        c:wait_scripts_idle(180)
        local again
        again, reports = raised()
      until again == n
      local pages = 0
      for l in (procs.read(pages_log) or ""):gmatch("[^\n]+") do
        if json.decode(l).path == "/page" then pages = pages + 1 end
      end
      local why = table.concat(reports, "\n") .. "\n" .. (procs.read(dir .. "/eventilator.log") or ""):sub(-4000)
      assert.is_true(n >= 1, "no +odown in the Sentinels' logs\n" .. why)
      assert.is_true(#reports >= 2, "only one Sentinel raised +odown: nothing to dedupe\n" .. why)
      assert.equal(n, pages, "pages for " .. n .. " +odown event(s)\n" .. why)
    end)
    local logs = (ok or not c) and "" or c:sentinel_logs()
    if c then c:stop() end
    procs.kill(httpd)
    procs.rmtree(dir)
    assert(ok, tostring(err) .. "\n" .. logs)
  end)
end)
