-- An HTTP stand-in (spec/support/httpd.py) on a loopback port of its own, for the
-- specs of modules that call an HTTP API (PagerDuty, a webhook, Consul, a
-- cloud API): the requests it got, decoded, and the reply it gives.
--
--   local s = standin.start{ secret = "..." }   -- s.url = "http://127.0.0.1:<port>"
--   s.reply{ status = 200, body = "true" }; s.requests(); s.clear(); s.reset(); s.stop()
local procs = require("procs")
local json = require("cjson")

local M = {}

-- opts.secret: the HMAC secret httpd.py's /verify/ paths check signatures with.
function M.start(opts)
  opts = opts or {}
  local s = { dir = procs.tmpdir() }
  s.log, s.replyf = s.dir .. "/requests.jsonl", s.dir .. "/reply.json"
  local ready, stdout = s.dir .. "/ready", s.dir .. "/httpd.out"
  s.pid = procs.spawn(string.format("python3 %s 0 --ready %s --log %s --reply %s%s",
    procs.quote(procs.src .. "/spec/support/httpd.py"), procs.quote(ready), procs.quote(s.log), procs.quote(s.replyf),
    opts.secret and (" --secret " .. procs.quote(opts.secret)) or ""), stdout)
  s.port = procs.ready_port(s.pid, ready, "httpd.py", stdout)
  s.url = "http://127.0.0.1:" .. s.port

  -- Every request so far; a JSON body is decoded into .json.
  function s.requests()
    local out = {}
    for l in (procs.read(s.log) or ""):gmatch("[^\n]+") do
      local r = json.decode(l)
      local ok, v = pcall(json.decode, r.body)
      if ok then r.json = v end
      out[#out + 1] = r
    end
    return out
  end
  function s.reply(t)
    if t then procs.write(s.replyf, json.encode(t)) else os.remove(s.replyf) end
  end
  function s.clear() os.remove(s.log) end
  function s.reset()
    s.reply(nil)
    s.clear()
  end
  s.stop = procs.stopper(s)
  return s
end

return M
