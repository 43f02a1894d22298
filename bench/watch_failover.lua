-- Failover to first handler, watch mode against script mode, measured on
-- the same constellation and the same failover: the Sentinels run the
-- built eventilator as notification-script AND a watcher subscribes to
-- them, with one rule file for both that records ev.source and ev.time.
-- The master is killed (SIGKILL); the figure is the time from the kill to
-- the first handler of each mode (always a +sdown), and to +odown.
--   lua5.4 bench/watch_failover.lua [ROUNDS]   (default 3; needs ./build)
package.path = "spec/support/?.lua;" .. package.path
local procs = require("procs")
local constellation = require("constellation")
local watcher = require("watcher")

local rounds = tonumber(arg[1]) or 3
local results = {}

for round = 1, rounds do
  local w = watcher.new()
  local c = constellation.new{ conf = w.conf }
  w:record("10-record.lua", { "+sdown", "+odown", "+switch-master" })
  local ok, err = pcall(function()
    c:start()
    w:config(string.format("watch = { sentinels = { %q } }", c:sentinel_addr(1))) -- its port, once it listens
    w:start()
    w:wait_log("connected and subscribed", 3)
    os.remove(w.out)
    procs.sleep(1)
    local _, killed = c:kill_master()
    local function first(source, name)
      local t
      for _, r in ipairs(w:handled()) do
        if r.source == source and (not name or r.name == name) and (not t or r.time < t) then t = r.time end
      end
      return t and (t - killed) * 1000
    end
    procs.wait(function() return first("script", "+odown") and first("watch", "+odown") end, 60,
      "+odown in both modes")
    local r = { script = first("script"), watch = first("watch"),
                script_odown = first("script", "+odown"), watch_odown = first("watch", "+odown") }
    results[#results + 1] = r
    io.stdout:write(string.format("round %d: first handler: script %.0f ms, watch %.0f ms; "
      .. "+odown: script %.0f ms, watch %.0f ms\n", round, r.script, r.watch, r.script_odown, r.watch_odown))
  end)
  pcall(w.stop, w, 30)
  w:cleanup()
  c:stop()
  if not ok then error(err, 0) end
end

local function median(key)
  local v = {}
  for i, r in ipairs(results) do v[i] = r[key] end
  table.sort(v)
  return v[(#v + 1) // 2]
end
io.stdout:write(string.format("median of %d: first handler script %.0f ms, watch %.0f ms; "
  .. "+odown script %.0f ms, watch %.0f ms (down-after-milliseconds 1000)\n", #results,
  median("script"), median("watch"), median("script_odown"), median("watch_odown")))
