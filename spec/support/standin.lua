-- spec/support/httpd.py on a spare port, for one spec file:
--   local s = standin.start{ secret = "..." }
--   s.base, s.requests() (decoded log lines), s.reply(t or nil), s.reset(), s.stop()
local procs = require("procs")
local json = require("cjson")

local M = {}

function M.start(opts)
  opts = opts or {}
  local s = { dir = procs.tmpdir(), port = procs.free_port() }
  s.log, s.replyf = s.dir .. "/requests.jsonl", s.dir .. "/reply.json"
  s.pid = procs.spawn(string.format("python3 %s %d --log %s --reply %s%s",
    procs.quote(procs.src .. "/spec/support/httpd.py"), s.port, procs.quote(s.log), procs.quote(s.replyf),
    opts.secret and (" --secret " .. procs.quote(opts.secret)) or ""))
  s.base = "http://127.0.0.1:" .. s.port
  procs.wait(function()
    return require("eventilator.http").request({ url = s.base .. "/status/200", timeout = 1 }) ~= nil
  end, 10, "httpd.py on " .. s.port)
  function s.requests()
    local out = {}
    for l in (procs.read(s.log) or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(l) end
    return out
  end
  function s.reply(t)
    if t then procs.write(s.replyf, json.encode(t)) else os.remove(s.replyf) end
  end
  function s.reset()
    s.reply(nil)
    os.remove(s.log)
  end
  function s.stop()
    procs.kill(s.pid)
    procs.rmtree(s.dir)
  end
  return s
end

return M
