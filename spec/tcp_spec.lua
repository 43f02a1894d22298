-- The eventilator.tcp binding against real listeners: spec/support/tcpd.py
-- in its echo, haproxy, sensu, silent and close modes, on 127.0.0.1, ::1
-- and a unix socket.
local procs = require("procs")
local tcp = require("eventilator.tcp")
local cjson = require("cjson")

local TCPD = procs.src .. "/spec/support/tcpd.py"
local DEADLINE = "eventilator.deadline"

-- CLOCK_MONOTONIC, read without a fork: for elapsed times, and the clock
-- deadline.h compares against.
local now, monotonic = procs.now, procs.now

-- Start tcpd.py with `args` (a shell-quoted string); returns a handle with
-- port, dir, log, stop() and entries() (the decoded --log lines).
local function tcpd(args, opts)
  opts = opts or {}
  local h = { dir = procs.tmpdir() }
  h.log = h.dir .. "/log.jsonl"
  local ready = h.dir .. "/ready"
  local where
  if opts.unix then
    h.path = h.dir .. "/tcpd.sock"
    where = "--unix " .. procs.quote(h.path)
  else
    h.host = opts.host or "127.0.0.1"
    where = string.format("--host %s --port 0", procs.quote(h.host)) -- the kernel picks; --ready tells
  end
  h.pid = procs.spawn(string.format("python3 %s %s %s --log %s --ready %s", procs.quote(TCPD), where,
    args, procs.quote(h.log), procs.quote(ready)), h.dir .. "/tcpd.out")
  local port = procs.ready_port(h.pid, ready, "tcpd.py " .. args, h.dir .. "/tcpd.out")
  if not h.path then h.port = port end
  function h.connect(o)
    if h.path then return tcp.connect(h.path, o) end
    return tcp.connect(h.host, h.port, o)
  end
  function h.entries()
    local out = {}
    for line in (procs.read(h.log) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
    return out
  end
  h.stop = procs.stopper(h)
  return h
end

describe("eventilator.tcp", function()
  after_each(function()
    debug.getregistry()[DEADLINE] = nil
  end)

  describe("against an echo server", function()
    local srv
    setup(function() srv = tcpd("--mode echo") end)
    teardown(function() srv.stop() end)

    it("sends and receives a line", function()
      local c = assert(srv.connect())
      assert.equal("tcp conn (127.0.0.1:" .. srv.port .. ")", tostring(c))
      assert.equal(6, c:send("hello\n"))
      assert.equal("hello", c:receive())
      assert.equal(5, c:send("abc\r\n"))
      assert.equal("abc", c:receive("*l"), "trailing CR stripped")
      assert.equal(4, c:send("ab\r\n"))
      assert.equal("ab", c:receive("l"))
      assert.is_true(c:close())
    end)

    it("keeps the data after a line for the next call", function()
      local c = assert(srv.connect())
      c:send("one\ntwo\nthree\n")
      assert.equal("one", c:receive())
      assert.equal("two", c:receive())
      assert.equal("thr", c:receive(3))
      assert.equal("ee", c:receive())
      c:close()
    end)

    it("receives exactly n bytes", function()
      local c = assert(srv.connect())
      c:send("hello world\n")
      assert.equal("hello", c:receive(5))
      assert.equal(" ", c:receive(1))
      assert.equal("", c:receive(0))
      assert.equal("world\n", c:receive(6))
      c:close()
    end)

    it("sends binary data whole", function()
      local c = assert(srv.connect())
      local blob = string.rep("\0\1\255xyz", 100000) -- 600 kB in one call
      assert.equal(#blob + 1, c:send(blob .. "\n"))
      assert.equal(blob, c:receive())
      c:close()
    end)

    it("records what arrived in the log", function()
      local c = assert(srv.connect())
      c:send("logged line\n")
      c:receive()
      c:close()
      local found = false
      for _, e in ipairs(srv.entries()) do
        if e.data == "logged line" and e.mode == "echo" then found = true end
      end
      assert.is_true(found)
    end)
  end)

  describe("a line that arrives in pieces", function()
    local srv
    setup(function() srv = tcpd("--mode echo --trickle 0.02") end)
    teardown(function() srv.stop() end)

    it("is joined within one receive, CR and LF in separate segments", function()
      local c = assert(srv.connect())
      c:send("split line\r\nafter\n")
      assert.equal("split line", c:receive())
      assert.equal("after", c:receive())
      c:close()
    end)

    it("continues in the next receive after a timeout with partial data", function()
      local c = assert(srv.connect())
      c:send("abcdefghijklmnopqrstuvwxyz\n")
      c:settimeout(0.15)
      local data, err, partial = c:receive()
      assert.is_nil(data)
      assert.matches("timed out after 0%.15 s$", err)
      assert.is_true(#partial > 0 and #partial < 26, "got " .. #partial .. " bytes")
      c:settimeout(5)
      local rest = assert(c:receive())
      assert.equal("abcdefghijklmnopqrstuvwxyz", partial .. rest)
      c:close()
    end)
  end)

  describe("against the HAProxy stand-in", function()
    it("reads a whole reply with *a", function()
      local srv = tcpd("--mode haproxy")
      finally(srv.stop)
      local c = assert(srv.connect())
      c:send("show info\n")
      local reply = assert(c:receive("*a"))
      assert.matches("Name: HAProxy\n", reply, 1, true)
      assert.equal("", c:receive("a"), "EOF again after *a")
      c:close()
    end)

    it("sets a server to maint over a unix socket", function()
      local srv = tcpd("--mode haproxy", { unix = true })
      finally(srv.stop)
      local c = assert(tcp.connect(srv.path))
      assert.equal("tcp conn (" .. srv.path .. ")", tostring(c))
      c:send("set server be/redis1 state maint\n")
      assert.equal("\n", c:receive("*a"))
      c:close()
      assert.equal("set server be/redis1 state maint", srv.entries()[1].data)
    end)

    it("returns nil, closed, partial when EOF comes before n bytes", function()
      local srv = tcpd("--mode haproxy --reply 'short\\n'")
      finally(srv.stop)
      local c = assert(srv.connect())
      c:send("show info\n")
      local data, err, partial = c:receive(100)
      assert.is_nil(data)
      assert.equal("tcp 127.0.0.1:" .. srv.port .. ": closed", err)
      assert.equal("short\n", partial)
      c:close()
    end)
  end)

  describe("against the Sensu stand-in", function()
    local check = '{"name":"redis_odown","output":"+odown master cache1","status":2,"handlers":["pd"]}'

    it("gets ok for a check result sent without a newline", function()
      local srv = tcpd("--mode sensu")
      finally(srv.stop)
      local c = assert(srv.connect())
      assert.equal(#check, c:send(check))
      assert.equal("ok", c:receive("*a"))
      c:close()
      local e = srv.entries()[1]
      assert.equal("redis_odown", e.json.name)
      assert.equal(check, e.data)
    end)

    it("gets invalid for a result without output, or when told to", function()
      local srv, srv2 = tcpd("--mode sensu"), nil
      -- busted keeps one finally per test: it stops both servers
      finally(function()
        srv.stop()
        if srv2 then srv2.stop() end
      end)
      local c = assert(srv.connect())
      c:send('{"name":"x"}')
      assert.equal("invalid", c:receive("*a"))
      c:close()
      srv2 = tcpd("--mode sensu --reply invalid")
      c = assert(srv2.connect())
      c:send(check)
      assert.equal("invalid", c:receive("*a"))
      c:close()
    end)

    it("answers ping, and invalid when a result stops half way", function()
      local srv = tcpd("--mode sensu")
      finally(srv.stop)
      local c = assert(srv.connect())
      c:send("ping\n")
      assert.equal("pong", c:receive("*a"))
      c:close()
      c = assert(srv.connect())
      c:send('{"name":"half')
      assert.equal("invalid", c:receive("*a"), "after the 0.5 s watchdog")
      c:close()
    end)

    it("gets invalid after a half-close with no JSON", function()
      local srv = tcpd("--mode sensu")
      finally(srv.stop)
      local c = assert(srv.connect())
      c:send("not json")
      assert.is_true(c:shutdown())
      assert.equal("invalid", c:receive("*a"))
      c:close()
    end)
  end)

  it("connects over IPv6 ::1", function()
    local srv = tcpd("--mode echo", { host = "::1" })
    finally(srv.stop)
    local c = assert(tcp.connect("::1", srv.port))
    assert.equal("tcp conn ([::1]:" .. srv.port .. ")", tostring(c))
    c:send("six\n")
    assert.equal("six", c:receive())
    c:close()
  end)

  it("resolves a host name", function()
    local srv = tcpd("--mode echo")
    finally(srv.stop)
    local c = assert(tcp.connect("localhost", srv.port)) -- ::1 refused first is fine
    c:send("named\n")
    assert.equal("named", c:receive())
    c:close()
  end)

  describe("expected failures return nil, err", function()
    it("connection refused", function()
      local port = procs.closed_port()
      local c, err = tcp.connect("127.0.0.1", port)
      assert.is_nil(c)
      assert.equal("tcp 127.0.0.1:" .. port .. ": connection refused", err)
      c, err = tcp.connect("::1", port)
      assert.is_nil(c)
      assert.equal("tcp [::1]:" .. port .. ": connection refused", err)
    end)

    it("a missing unix socket", function()
      local c, err = tcp.connect("/nonexistent/eventilator.sock")
      assert.is_nil(c)
      assert.equal("tcp /nonexistent/eventilator.sock: no such file or directory", err)
    end)

    it("a name that does not resolve", function()
      local c, err = tcp.connect("no-such-host.invalid", 3030, { connect_timeout = 1 })
      assert.is_nil(c)
      assert.matches("^tcp no%-such%-host%.invalid:3030: ", err)
    end)

    it("a connect that is never answered times out", function()
      -- A listener with a backlog of 0 that never accepts: once its queue
      -- is full, the kernel drops further SYNs and connect hangs.
      local dir = procs.tmpdir()
      local pid = procs.spawn(string.format([[python3 -c 'import os, socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
open("%s/ready.tmp", "w").write(str(s.getsockname()[1])); os.rename("%s/ready.tmp", "%s/ready"); time.sleep(60)']],
        dir, dir, dir))
      finally(function() procs.halt(pid); procs.rmtree(dir) end)
      local port = procs.ready_port(pid, dir .. "/ready", "stalled listener")
      local held, c, err = {}, nil, nil
      for _ = 1, 8 do
        c, err = tcp.connect("127.0.0.1", port, { connect_timeout = 0.3 })
        if not c then break end
        held[#held + 1] = c
      end
      assert.is_nil(c)
      assert.equal("tcp 127.0.0.1:" .. port .. ": timed out after 0.3 s", err)
      for _, h in ipairs(held) do h:close() end
    end)

    it("a server that never answers: receive times out within its bound", function()
      local srv = tcpd("--mode silent")
      finally(srv.stop)
      local c = assert(srv.connect({ timeout = 1 }))
      c:send("anyone there?\n")
      local t0 = now()
      local data, err, partial = c:receive()
      local elapsed = now() - t0
      assert.is_nil(data)
      assert.equal("tcp 127.0.0.1:" .. srv.port .. ": timed out after 1 s", err)
      assert.equal("", partial)
      assert.is_true(elapsed >= 0.9 and elapsed < 1 + 2, "elapsed " .. elapsed)
      -- still usable after a timeout
      c:settimeout(0.2)
      assert.is_nil((c:receive(4)))
      c:close()
      procs.wait(function() return #srv.entries() > 0 end, 5, "silent log")
      assert.equal("anyone there?\n", srv.entries()[1].data)
    end)

    it("sending to a peer that closed fails without SIGPIPE", function()
      local srv = tcpd("--mode close")
      finally(srv.stop)
      local c = assert(srv.connect())
      local n, err, sent
      for _ = 1, 50 do
        n, err, sent = c:send(string.rep("x", 65536))
        if not n then break end
        procs.sleep(0.05)
      end
      assert.is_nil(n)
      assert.matches("^tcp 127%.0%.0%.1:%d+: ", err)
      local gone = err:find("broken pipe", 1, true) or err:find("reset by peer", 1, true)
      assert.is_truthy(gone, err)
      assert.is_number(sent)
      c:close()
    end)

    it("*a beyond 16 MiB", function()
      local dir = procs.tmpdir()
      local pid = procs.spawn(string.format([[python3 -c 'import os, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open("%s/ready.tmp", "w").write(str(s.getsockname()[1])); os.rename("%s/ready.tmp", "%s/ready")
c, _ = s.accept()
try:
    c.sendall(b"x" * (17 << 20))
except OSError:
    pass']], dir, dir, dir))
      finally(function() procs.halt(pid); procs.rmtree(dir) end)
      local port = procs.ready_port(pid, dir .. "/ready", "big sender")
      local c = assert(tcp.connect("127.0.0.1", port))
      local data, err, partial = c:receive("*a")
      assert.is_nil(data)
      assert.matches("reply larger than 16 MiB$", err)
      assert.is_true(#partial <= 16 * 1024 * 1024)
      c:close()
    end)
  end)

  describe("lifecycle", function()
    local srv
    setup(function() srv = tcpd("--mode echo") end)
    teardown(function() srv.stop() end)

    it("raises on use after close", function()
      local c = assert(srv.connect())
      assert.is_true(c:close())
      assert.equal("tcp conn (closed)", tostring(c))
      for _, call in ipairs({
        function() c:send("x") end,
        function() c:receive() end,
        function() c:settimeout(1) end,
        function() c:shutdown() end,
      }) do
        assert.error_matches(call, "^calling '%a+' on bad self %(attempt to use a closed tcp connection%)$")
      end
    end)

    it("closes twice without complaint", function()
      local c = assert(srv.connect())
      assert.is_true(c:close())
      assert.is_true(c:close())
    end)

    it("closes a <close> variable at the end of its scope", function()
      local outer
      do
        local c <close> = assert(srv.connect())
        outer = c
        assert.equal("tcp conn (127.0.0.1:" .. srv.port .. ")", tostring(outer))
      end
      assert.equal("tcp conn (closed)", tostring(outer))
    end)
  end)

  describe("misuse raises", function()
    it("on an unknown option or a bad option value", function()
      assert.error_matches(function() tcp.connect("127.0.0.1", 1, { timeuot = 1 }) end,
        "^bad argument #3 to 'connect' %(unknown option 'timeuot'%)$")
      assert.has_error(function() tcp.connect("127.0.0.1", 1, { timeout = "soon" }) end)
      assert.has_error(function() tcp.connect("127.0.0.1", 1, { connect_timeout = -1 }) end)
      assert.has_error(function() tcp.connect("127.0.0.1", 1, { [1] = 2 }) end)
      assert.has_error(function() tcp.connect("127.0.0.1", 1, "fast") end)
    end)

    it("on bad arguments", function()
      assert.has_error(function() tcp.connect() end)
      assert.has_error(function() tcp.connect("127.0.0.1") end)
      assert.has_error(function() tcp.connect("127.0.0.1", 0) end)
      assert.has_error(function() tcp.connect("127.0.0.1", 70000) end)
      assert.has_error(function() tcp.connect("/run/x.sock", 3030) end)
      assert.has_error(function() tcp.connect("a\0b", 3030) end)
    end)

    it("on a bad pattern, count or timeout", function()
      local srv = tcpd("--mode echo")
      finally(srv.stop)
      local c <close> = assert(srv.connect())
      assert.has_error(function() c:receive("*x") end)
      assert.has_error(function() c:receive(-1) end)
      assert.has_error(function() c:receive(1.5) end)
      assert.has_error(function() c:receive(17 * 1024 * 1024) end)
      assert.has_error(function() c:send() end)
      assert.has_error(function() c:settimeout(0) end)
      assert.has_error(function() c.send(io.stdout, "x") end)
    end)
  end)

  describe("the time budget", function()
    local srv
    setup(function() srv = tcpd("--mode silent") end)
    teardown(function() srv.stop() end)

    it("fails every operation at once when spent", function()
      local c <close> = assert(srv.connect())
      debug.getregistry()[DEADLINE] = 0
      local t0 = now()
      local c2, err = srv.connect()
      assert.is_nil(c2)
      assert.equal("tcp 127.0.0.1:" .. srv.port .. ": time budget exhausted", err)
      local n, serr, sent = c:send("x")
      assert.is_nil(n)
      assert.matches("time budget exhausted$", serr)
      assert.equal(0, sent)
      local data, rerr, partial = c:receive()
      assert.is_nil(data)
      assert.matches("time budget exhausted$", rerr)
      assert.equal("", partial)
      assert.is_true(now() - t0 < 0.5)
      debug.getregistry()[DEADLINE] = nil
      assert.equal(1, c:send("x"))
    end)

    it("clamps a longer timeout to what is left", function()
      local c <close> = assert(srv.connect({ timeout = 10 }))
      debug.getregistry()[DEADLINE] = monotonic() + 1
      local t0 = now()
      local data, err = c:receive()
      local elapsed = now() - t0
      assert.is_nil(data)
      assert.matches("time budget exhausted$", err)
      assert.is_true(elapsed < 3, "elapsed " .. elapsed)
    end)
  end)
end)
