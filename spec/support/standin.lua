-- An HTTP stand-in (spec/support/httpd.py) on a spare loopback port, for the
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
  local s = { dir = procs.tmpdir(), port = procs.free_port() }
  s.url = "http://127.0.0.1:" .. s.port
  s.log, s.replyf = s.dir .. "/requests.jsonl", s.dir .. "/reply.json"
  s.pid = procs.spawn(string.format("python3 %s %d --log %s --reply %s%s",
    procs.quote(procs.src .. "/spec/support/httpd.py"), s.port, procs.quote(s.log), procs.quote(s.replyf),
    opts.secret and (" --secret " .. procs.quote(opts.secret)) or ""))
  procs.wait(function()
    return os.execute(string.format("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' 2>/dev/null", s.port)) == true
  end, 30, "httpd.py on " .. s.port)

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
  function s.stop()
    procs.kill(s.pid)
    procs.rmtree(s.dir)
  end
  return s
end

return M
