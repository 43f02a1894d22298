-- Watch mode (`eventilator watch`, docs/watch.md) against real peers, part 3 of 3:
-- one redis-sentinel monitoring 100 masters (ten per redis-server), all
-- killed at once.
-- Handlers record what they saw (spec/support/watcher.lua). Nothing here asserts a duration.
local procs = require("procs")
local watcher = require("watcher")

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
    w:record("10-record.lua", { "+sdown", "+odown" })
    w:start()
    w:wait_log("connected and subscribed", 1)
  end)

  teardown(function()
    if w then
      pcall(w.stop, w, 60)
      w:cleanup()
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
    procs.sleep(3)
    -- what the Sentinel published, from its log: on a loaded machine it can
    -- see a master come and go more than once, and each time is an event
    local slog = procs.read(dir .. "/sentinel.log") or ""
    local published = { ["+sdown"] = {}, ["+odown"] = {} }
    for name, m in slog:gmatch("([+]%a+) master (m%d+) ") do
      if published[name] then published[name][m] = (published[name][m] or 0) + 1 end
    end
    local seen = { ["+sdown"] = {}, ["+odown"] = {} }
    for _, r in ipairs(w:handled()) do
      seen[r.name][r.pod] = (seen[r.name][r.pod] or 0) + 1
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
    local _, tries = slog:gsub("%+try%-failover", "")
    note("100 masters: %d +try-failover in the Sentinel's log meanwhile", tries)
  end)
end)
