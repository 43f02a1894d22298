-- A real store holding one silence, for each receiver's spec in a stock
-- lua5.4 (spec/support/hostless.lua): config.redis points at a private
-- redis-server while it runs, and the module's log lines are kept.
--
--   local q = silenced.start(CFG, { pod = "pod1" [, event = "+odown"] })
--   finally(q.stop)
--   assert.is_true(receiver.send(ev))          -- silenced: nothing sent
--   assert.matches("silenced by " .. q.id, q.log())
local procs = require("procs")

local M = {}

function M.start(cfg, o)
  local store = procs.start_redis()
  local saved_redis, saved_log = cfg.redis, package.loaded["eventilator.log"]
  cfg.redis = { host = "127.0.0.1", port = store.port, timeout = 2 }
  local lines = {}
  local function logger(level)
    return function(fmt, ...) lines[#lines + 1] = level .. ": " .. string.format(fmt, ...) end
  end
  package.loaded["eventilator.log"] = { debug = logger("debug"), info = logger("info"), warn = logger("warn"),
    error = logger("error") }
  local s = assert(require("eventilator.silence").add{ pod = o.pod, event = o.event, seconds = 600,
    comment = o.comment or "planned failover", author = "spec" })
  local q = { id = s.id, silence = s, store = store }
  function q.log() return table.concat(lines, "\n") end
  function q.stop()
    cfg.redis = saved_redis
    package.loaded["eventilator.log"] = saved_log
    store.stop()
  end
  return q
end

return M
