-- The http binding (src/lhttp.c) against spec/support/httpd.py on loopback
-- ports of its own and a unix socket.
local procs = require("procs")
local cjson = require("cjson")
local http = require("eventilator.http")

local HTTPD = procs.src .. "/spec/support/httpd.py"
local DEADLINE = "eventilator.deadline"

-- CLOCK_MONOTONIC, the clock deadline.h compares against.
local now = procs.now

local function unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- httpd.py with `args` (its port first: 0, a port the kernel picks; or
-- --unix PATH); returns its pid and the port it listens on.
local function start_httpd(dir, name, args)
  local ready, out = dir .. "/" .. name .. ".ready", dir .. "/" .. name .. ".out"
  local pid = procs.spawn("python3 " .. procs.quote(HTTPD) .. " " .. args .. " --ready " .. procs.quote(ready), out)
  return pid, procs.ready_port(pid, ready, "httpd.py " .. name, out)
end

describe("eventilator.http", function()
  local dir, port, base, pid, upid, sock, log

  -- Every JSON line the stand-in logged, oldest first.
  local function records()
    local out = {}
    for line in (procs.read(log) or ""):gmatch("[^\n]+") do
      out[#out + 1] = cjson.decode(line)
    end
    return out
  end

  local function last_record(path)
    local recs = records()
    for i = #recs, 1, -1 do
      if recs[i].path == path then return recs[i] end
    end
  end

  lazy_setup(function()
    dir = procs.tmpdir()
    log = dir .. "/requests.log"
    sock = dir .. "/httpd.sock"
    pid, port = start_httpd(dir, "tcp", "0 --log " .. procs.quote(log))
    base = "http://127.0.0.1:" .. port
    upid = start_httpd(dir, "unix", "--unix " .. procs.quote(sock) .. " --log " .. procs.quote(log))
  end)

  lazy_teardown(function()
    procs.halt(pid)
    procs.halt(upid)
    procs.rmtree(dir)
  end)

  describe("responses", function()
    it("returns status, body and headers for a 200", function()
      local r, err = http.request({ url = base .. "/" })
      assert.is_nil(err)
      assert.equal(200, r.status)
      assert.equal('{"ok":true}', r.body)
      assert.equal("application/json", r.headers["content-type"])
    end)

    it("returns 4xx and 5xx as responses, not errors", function()
      for _, code in ipairs({ 400, 404, 500, 503 }) do
        local r, err = http.request({ url = base .. "/status/" .. code })
        assert.is_nil(err)
        assert.equal(code, r.status)
        assert.same({ status = code }, cjson.decode(r.body))
      end
    end)

    it("lowercases response header names and joins repeats with ', '", function()
      local r = assert(http.request({
        url = base .. "/status/200?header=X-Multi:a&header=X-Multi:b&header=X-Mixed-Case:yes",
      }))
      assert.equal("a, b", r.headers["x-multi"])
      assert.equal("yes", r.headers["x-mixed-case"])
      for name in pairs(r.headers) do
        assert.equal(name:lower(), name)
      end
    end)

    it("handles HEAD without waiting for a body", function()
      local r = assert(http.request({ url = base .. "/", method = "HEAD", timeout = 2 }))
      assert.equal(200, r.status)
      assert.equal("", r.body)
    end)
  end)

  describe("requests", function()
    it("sends the given headers and a user agent", function()
      local r = assert(http.request({
        url = base .. "/echo",
        headers = { ["X-Token"] = "abc", ["X-Count"] = 3, ["X-Empty"] = "" },
      }))
      local echo = cjson.decode(r.body)
      assert.equal("GET", echo.method)
      assert.equal("abc", echo.headers["x-token"])
      assert.equal("3", echo.headers["x-count"])
      assert.equal("", echo.headers["x-empty"])
      assert.matches("^eventilator/", echo.headers["user-agent"])
    end)

    it("POSTs a binary body intact (NUL bytes included)", function()
      local body = "a\0b\0\255c" .. string.rep("\0", 10)
      local r = assert(http.request({ url = base .. "/echo", body = body }))
      local echo = cjson.decode(r.body)
      assert.equal("POST", echo.method)
      assert.equal(body, unhex(echo.body_hex))
      assert.equal(tostring(#body), echo.headers["content-length"])
      assert.equal(body, unhex(last_record("/echo").body_hex))
    end)

    it("uses the given method, with or without a body", function()
      local r = assert(http.request({ url = base .. "/echo", method = "PUT", body = "x" }))
      assert.same({ "PUT", "x" }, { cjson.decode(r.body).method, cjson.decode(r.body).body })
      r = assert(http.request({ url = base .. "/echo", method = "DELETE" }))
      assert.equal("DELETE", cjson.decode(r.body).method)
      r = assert(http.request({ url = base .. "/echo", method = "POST" }))
      local echo = cjson.decode(r.body)
      assert.same({ "POST", "0" }, { echo.method, echo.headers["content-length"] })
    end)

    it("reaches a server on a unix socket", function()
      local r = assert(http.request({ url = "http://localhost/echo", unix_socket = sock, body = "hi" }))
      assert.equal(200, r.status)
      local echo = cjson.decode(r.body)
      assert.same({ "POST", "hi" }, { echo.method, echo.body })
    end)
  end)

  describe("post_json", function()
    it("POSTs the encoded value as application/json", function()
      local value = { event = "+odown", master = "mymaster", n = 2, list = { 1, 2, 3 } }
      local r = assert(http.post_json(base .. "/echo", value))
      assert.equal(200, r.status)
      local echo = cjson.decode(r.body)
      assert.equal("POST", echo.method)
      assert.equal("application/json", echo.headers["content-type"])
      assert.same(value, cjson.decode(echo.body))
    end)

    it("merges opts.headers and lets them set the content type", function()
      local r = assert(http.post_json(base .. "/echo", { a = 1 }, {
        headers = { ["X-Extra"] = "1", ["content-type"] = "application/json; charset=utf-8" },
        timeout = 3,
      }))
      local echo = cjson.decode(r.body)
      assert.equal("1", echo.headers["x-extra"])
      assert.equal("application/json; charset=utf-8", echo.headers["content-type"])
    end)

    it("returns nil, err like request", function()
      local r, err = http.post_json("http://127.0.0.1:" .. procs.closed_port() .. "/hook", { a = 1 })
      assert.is_nil(r)
      assert.matches("^http POST http://127%.0%.0%.1:%d+/hook: ", err)
    end)
  end)

  describe("transport failures", function()
    it("times out on a server that never answers, within the bound", function()
      local t0 = now()
      local r, err = http.request({ url = base .. "/hang", timeout = 1 })
      local elapsed = now() - t0
      assert.is_nil(r)
      assert.matches("^http GET " .. base:gsub("%p", "%%%0") .. "/hang: timed out after 1 s %(", err)
      assert.is_true(elapsed < 1 + 2, "took " .. elapsed .. " s")
    end)

    it("returns nil, err when the connection is refused", function()
      local url = "http://127.0.0.1:" .. procs.closed_port() .. "/x"
      local r, err = http.request({ url = url, method = "POST", body = "b" })
      assert.is_nil(r)
      assert.equal("http POST " .. url .. ": ", err:sub(1, #url + 12))
      assert.matches("Couldn't connect to server", err, 1, true)
    end)

    it("keeps tokens out of error messages", function()
      local p = procs.closed_port()
      local _, err = http.request({
        url = "http://user:pa55word@127.0.0.1:" .. p .. "/hook?token=t0ken",
        headers = { Authorization = "Bearer s3cret" },
      })
      assert.equal("http GET http://127.0.0.1:" .. p .. "/hook?...: ", err:match("^.-%?%.%.%.: "))
      for _, secret in ipairs({ "pa55word", "t0ken", "s3cret" }) do
        assert.is_nil(err:find(secret, 1, true))
      end
    end)

    it("fails a body over max_body", function()
      local r, err = http.request({ url = base .. "/big/2000", max_body = 1000 })
      assert.is_nil(r)
      assert.equal("http GET " .. base .. "/big/2000: response body over 1000 bytes", err)
      r = assert(http.request({ url = base .. "/big/1000", max_body = 1000 }))
      assert.equal(string.rep("x", 1000), r.body)
    end)

    it("limits bodies to 1 MiB by default", function()
      local r = assert(http.request({ url = base .. "/big/1048576" }))
      assert.equal(1048576, #r.body)
      local _, err = http.request({ url = base .. "/big/1048577" })
      assert.matches("response body over 1048576 bytes$", err)
    end)

    it("fails https to a port without TLS, without crashing", function()
      local r, err = http.request({ url = "https://127.0.0.1:" .. port .. "/", timeout = 3 })
      assert.is_nil(r)
      assert.matches("^http GET https://127%.0%.0%.1:%d+/: .+", err)
    end)

    it("refuses a protocol other than http and https", function()
      local r, err = http.request({ url = "file:///etc/passwd" })
      assert.is_nil(r)
      assert.matches("[Pp]rotocol", err)
    end)
  end)

  describe("TLS", function()
    local tpid, tport

    lazy_setup(function()
      local _, rc = procs.sh(string.format(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
          .. "-keyout %s -out %s >/dev/null 2>&1",
        procs.quote(dir .. "/key.pem"), procs.quote(dir .. "/cert.pem")))
      assert.equal(0, rc, "openssl could not make a test certificate")
      tpid, tport = start_httpd(dir, "tls", string.format("0 --cert %s --key %s",
        procs.quote(dir .. "/cert.pem"), procs.quote(dir .. "/key.pem")))
    end)

    lazy_teardown(function() procs.halt(tpid) end)

    it("verifies certificates by default", function()
      local r, err = http.request({ url = "https://localhost:" .. tport .. "/", timeout = 3 })
      assert.is_nil(r)
      assert.matches("certificate", err)
    end)

    it("skips verification only when insecure = true", function()
      local url = "https://localhost:" .. tport .. "/"
      local r, err = http.request({ url = url, timeout = 3, insecure = true })
      assert.is_nil(err)
      assert.equal(200, r.status)
    end)
  end)

  describe("a canned reply (httpd.py --reply, used by later specs)", function()
    local rpid, rbase, reply

    lazy_setup(function()
      reply = dir .. "/reply.json"
      local rport
      rpid, rport = start_httpd(dir, "reply", "0 --reply " .. procs.quote(reply))
      rbase = "http://127.0.0.1:" .. rport
    end)

    lazy_teardown(function() procs.halt(rpid) end)

    it("is re-read for every request", function()
      procs.write(reply, cjson.encode({ status = 200, body = { ok = false, error = "channel_not_found" },
        headers = { { "X-Slack-Req", "1" }, { "X-Slack-Req", "2" } } }))
      local r = assert(http.post_json(rbase .. "/api/chat.postMessage", { channel = "x" }))
      assert.same({ ok = false, error = "channel_not_found" }, cjson.decode(r.body))
      assert.equal("1, 2", r.headers["x-slack-req"])
      procs.write(reply, cjson.encode({
        status = 429, headers = { ["Retry-After"] = "1" }, body = "slow down" }))
      r = assert(http.request({ url = rbase .. "/anything" }))
      assert.same({ 429, "1", "slow down" }, { r.status, r.headers["retry-after"], r.body })
    end)
  end)

  describe("redirects", function()
    it("are not followed by default", function()
      local r = assert(http.request({ url = base .. "/redirect" }))
      assert.equal(302, r.status)
      assert.equal("/status/200", r.headers.location)
    end)

    it("are followed when asked, keeping only the final headers", function()
      local r = assert(http.request({ url = base .. "/redirect", follow_redirects = true }))
      assert.equal(200, r.status)
      assert.same({ status = 200 }, cjson.decode(r.body))
      assert.is_nil(r.headers.location)
    end)

    it("stop after 5 hops", function()
      assert.equal(200, assert(http.request({ url = base .. "/redirect/5", follow_redirects = true })).status)
      local r, err = http.request({ url = base .. "/redirect/6", follow_redirects = true })
      assert.is_nil(r)
      assert.matches("redirect", err)
    end)
  end)

  describe("misuse raises", function()
    it("on an unknown option", function()
      assert.error_matches(function() http.request({ url = base, tiemout = 1 }) end,
        "^bad argument #1 to 'request' %(unknown option 'tiemout'%)$")
      assert.error_matches(function() http.post_json(base, {}, { bdoy = "" }) end,
        "^bad argument #3 to 'post_json' %(unknown option 'bdoy'%)$")
    end)

    it("on wrong types and bad values", function()
      local bad = {
        { url = 42 },
        { url = base, method = 1 },
        { url = base, headers = "X-A: 1" },
        { url = base, headers = { ["X-A"] = {} } },
        { url = base, headers = { [1] = "x" } },
        { url = base, headers = { ["Bad Name"] = "x" } },
        { url = base, headers = { ["X-A"] = "a\r\nX-Injected: 1" } },
        { url = base, body = {} },
        { url = base, timeout = "5" },
        { url = base, timeout = 0 },
        { url = base, connect_timeout = -1 },
        { url = base, unix_socket = true },
        { url = base, insecure = "yes" },
        { url = base, max_body = 1.5 },
        { url = base, max_body = -1 },
        { url = base, follow_redirects = 1 },
        { url = base, method = "GE T" },
        { url = base, method = "HEAD", body = "x" },
        { [1] = base },
        {},
      }
      for i, opts in ipairs(bad) do
        assert.has_error(function() http.request(opts) end, nil, "case " .. i)
      end
      assert.has_error(function() http.request(base) end)
      assert.has_error(function() http.request() end)
    end)

    it("in post_json on bad arguments or a value cjson cannot encode", function()
      assert.has_error(function() http.post_json(nil, {}) end)
      assert.has_error(function() http.post_json(base) end)
      assert.has_error(function() http.post_json(base, {}, "opts") end)
      assert.has_error(function() http.post_json(base, {}, { url = base }) end)
      assert.has_error(function() http.post_json(base, {}, { body = "x" }) end)
      assert.has_error(function() http.post_json(base, { f = print }) end)
    end)
  end)

  describe("time budget", function()
    local reg = debug.getregistry()

    after_each(function() reg[DEADLINE] = nil end)

    it("fails at once, without connecting, when the budget is spent", function()
      reg[DEADLINE] = 0
      local r, err = http.request({ url = base .. "/echo?budget-spent" })
      reg[DEADLINE] = nil
      assert.is_nil(r)
      assert.equal("http GET " .. base .. "/echo?...: time budget exhausted", err)
      assert.is_nil(last_record("/echo?budget-spent"))
    end)

    it("clamps the timeout to what is left of the budget", function()
      reg[DEADLINE] = now() + 1
      local t0 = now()
      local r, err = http.request({ url = base .. "/hang", timeout = 10 })
      local elapsed = now() - t0
      reg[DEADLINE] = nil
      assert.is_nil(r)
      assert.matches("time budget exhausted", err, 1, true)
      assert.is_true(elapsed < 3, "took " .. elapsed .. " s")
    end)

    it("changes nothing when far away", function()
      reg[DEADLINE] = now() + 3600
      assert.equal(200, assert(http.request({ url = base .. "/" })).status)
    end)
  end)
end)
