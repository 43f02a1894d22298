-- Watch mode (`eventilator watch`, docs/watch.md) against real peers, part 3 of 3:
-- one redis-sentinel monitoring 100 masters (ten per redis-server), all
-- killed at once.
-- Handlers record what they saw (spec/support/watcher.lua). Nothing here asserts a duration.
local procs = require("procs")
local watcher = require("watcher")
local constellation = require("constellation") -- its reader of Sentinel logs

local note = watcher.note

local is = watcher.is

describe("watch mode at scale: one Sentinel, 100 masters, all down at once", function()
  local servers, dir, sport, spid, w = {}, nil, nil, nil, nil

  setup(function()
    dir = procs.tmpdir()
    for i = 1, 10 do servers[i] = procs.start_redis() end
    -- ten masters per redis-server: 100 masters, no replicas, quorum 1
    local function conf(port)
      local lines = { "port " .. port, "bind 127.0.0.1", "daemonize no", "dir " .. dir, "logfile " .. dir .. "/sentinel.log" }
      for m = 1, 100 do
        local name, p = string.format("m%03d", m), servers[(m - 1) % 10 + 1].port
        lines[#lines + 1] = string.format("sentinel monitor %s 127.0.0.1 %d 1", name, p)
        lines[#lines + 1] = string.format("sentinel down-after-milliseconds %s 1000", name)
        lines[#lines + 1] = string.format("sentinel failover-timeout %s 5000", name)
      end
      return lines
    end
    local path = dir .. "/sentinel.conf"
    sport, spid = procs.redis_serve(path, { cmd = "redis-sentinel " .. procs.quote(path), conf = conf,
      out = dir .. "/stdout.log", log = dir .. "/sentinel.log" })
    procs.wait(function()
      local out = procs.cli(sport, "sentinel", "masters")
      local _, n = out:gsub("\nflags\nmaster\n", "")
      return n == 100
    end, 30, "100 masters up")
    w = watcher.new{ config = string.format("watch = { sentinels = { \"127.0.0.1:%d\" } }", sport) }
    w:record("10-record.lua", { "+sdown", "+odown", "+set" }) -- +set: the marks (below)
    w:start()
    w:wait_log("connected and subscribed", 1)
  end)

  teardown(function()
    if w then
      w:finish(60)
    end
    procs.halt(spid)
    for _, s in ipairs(servers) do s.stop() end
    procs.rmtree(dir)
  end)

  it("handles every +sdown and +odown exactly once, 100 each", function()
    local pids = {}
    for i, s in ipairs(servers) do
      pids[i] = procs.cli(s.port, "info", "server"):match("process_id:(%d+)") -- the server, not `timeout`
    end
    os.execute("kill -KILL " .. table.concat(pids, " ") .. " 2>/dev/null")
    w:wait_handled(is("+odown"), 100, 90, "100 +odown")
    w:wait_handled(is("+sdown"), 100, 30, "100 +sdown")
    -- What the Sentinel published, from its log: on a loaded machine it can see a master come
    -- and go more than once, and each time is an event. Everything it published before a +set
    -- it raises on demand has reached the watcher before that mark (in order), and has run once
    -- the watcher settles; again while it raised +sdown or +odown after the mark.
    local published, handled, quiet
    for round = 1, 20 do
      local tag = "mark" .. round
      assert.are.equal("OK", procs.cli(sport, "sentinel", "set", "m001", "rename-command", tag, tag))
      w:wait_handled(function(r) return r.name == "+set" and r.text:find(" " .. tag .. " " .. tag, 1, true) end, 1, 60,
        "the Sentinel's mark")
      w:settle(60)
      -- what ran, read before the log: nothing in it can come from a raise the log read leaves out
      handled = w:handled()
      published = { ["+sdown"] = {}, ["+odown"] = {} }
      local past, later = false, 0
      for _, e in ipairs(constellation.events(procs.read(dir .. "/sentinel.log"))) do
        local m = e.text:match("^master (m%d+) ")
        if e.name == "+set" and e.text:find(" " .. tag .. " " .. tag, 1, true) then
          past = true
        elseif published[e.name] and m then
          if past then
            later = later + 1
          else
            published[e.name][m] = (published[e.name][m] or 0) + 1
          end
        end
      end
      quiet = later == 0
      if quiet then break end
    end
    assert.is_true(quiet, "the Sentinel kept raising +sdown and +odown")
    local seen = { ["+sdown"] = {}, ["+odown"] = {} }
    for _, r in ipairs(handled) do
      if seen[r.name] then seen[r.name][r.pod] = (seen[r.name][r.pod] or 0) + 1 end
    end
    for _, name in ipairs({ "+sdown", "+odown" }) do
      local n = 0
      for m, k in pairs(seen[name]) do
        n = n + 1
        assert.are.equal(published[name][m], k, name .. " " .. m .. ": handled as often as published")
        if k > 1 then note("%s %s: published and handled %d times", name, m, k) end
      end
      assert.are.equal(100, n, name)
    end
    local _, tries = (procs.read(dir .. "/sentinel.log") or ""):gsub("%+try%-failover", "")
    note("100 masters: %d +try-failover in the Sentinel's log meanwhile", tries)
  end)
end)
