-- A private Prometheus Alertmanager (Debian's prometheus-alertmanager) on a
-- loopback port of its own (procs.serve), with a minimal config (one receiver that sends
-- nowhere), its own storage folder and no cluster listener (so it opens no
-- gossip port). Runs under procs.spawn's timeout.
--
--   local am = require("alertmanager").start()
--   am.url                      -- "http://127.0.0.1:<port>"
--   am.alerts()                 -- GET /api/v2/alerts (active ones), decoded
--   am.find("RedisMasterDown")  -- the alerts with that alertname
--   am.stop()
local procs = require("procs")
local json = require("cjson")

local M = {}

-- One receiver, named after the folder: /api/v2/receivers tells this
-- Alertmanager from another one on the port.
local CONFIG = [[
route:
  receiver: "%s"
  group_wait: 1h
receivers:
  - name: "%s"
]]

local function get(url)
  local res = require("eventilator.http").request({ url = url, timeout = 5 })
  if not res or res.status ~= 200 then return nil end
  return res.body
end

function M.start()
  local dir = procs.tmpdir()
  local me = "null-" .. dir:match("([^/.]+)$")
  procs.write(dir .. "/alertmanager.yml", string.format(CONFIG, me, me))
  local stdout = dir .. "/alertmanager.log"
  local port, pid = procs.serve{
    what = "alertmanager (log: " .. stdout .. ")", timeout = 30,
    start = function(p)
      return procs.spawn(string.format(
        "prometheus-alertmanager --config.file=%s --storage.path=%s --web.listen-address=127.0.0.1:%d " ..
        "--cluster.listen-address= --log.level=warn",
        procs.quote(dir .. "/alertmanager.yml"), procs.quote(dir .. "/data"), p), stdout)
    end,
    up = function(p)
      local body = get("http://127.0.0.1:" .. p .. "/api/v2/receivers")
      return body ~= nil and body:find('"' .. me .. '"', 1, true) ~= nil
    end,
    log = function() return procs.read(stdout) end,
  }
  local url = "http://127.0.0.1:" .. port
  local h = { port = port, dir = dir, pid = pid, url = url }
  procs.wait(function() return get(url .. "/-/ready") ~= nil end, 30, "alertmanager on " .. port)
  function h.alerts()
    return json.decode((assert(get(url .. "/api/v2/alerts"), "GET /api/v2/alerts failed")))
  end
  function h.find(name)
    local out = {}
    for _, a in ipairs(h.alerts()) do
      if a.labels.alertname == name then out[#out + 1] = a end
    end
    return out
  end
  h.stop = procs.stopper(h)
  return h
end

return M
