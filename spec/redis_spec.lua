-- The Redis binding against a private redis-server and local listeners on
-- loopback ports of their own. No mocks: every reply here came over a socket.
local procs = require("procs")
local redis = require("eventilator.redis")

local DEADLINE = "eventilator.deadline"

-- CLOCK_MONOTONIC, read without a fork: for elapsed times, and the clock
-- deadline.h compares against.
local now, monotonic = procs.now, procs.now

-- A TCP listener on a port the kernel picks; `serve(c)` (Python) runs in a
-- thread for each connection accepted.
local function start_listener(serve)
  local h = { dir = procs.tmpdir() }
  local ready = h.dir .. "/ready"
  local code = table.concat({
    "import os, socket, sys, threading, time",
    "def serve(c):",
    "    try:",
    "        " .. serve,
    "    except OSError:",
    "        pass",
    "s = socket.create_server(('127.0.0.1', 0))",
    "open(sys.argv[1] + '.tmp', 'w').write(str(s.getsockname()[1]))",
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])",
    "while True:",
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()",
  }, "\n")
  h.pid = procs.spawn("python3 -c " .. procs.quote(code) .. " " .. procs.quote(ready), h.dir .. "/out")
  h.port = procs.ready_port(h.pid, ready, "listener", h.dir .. "/out")
  h.stop = procs.stopper(h)
  return h
end

-- Accepts connections and never says a word.
local function start_silent()
  return start_listener("time.sleep(900)")
end

describe("eventilator.redis", function()
  local srv, c

  setup(function()
    srv = procs.start_redis()
  end)

  teardown(function()
    if srv then srv.stop() end
  end)

  before_each(function()
    c = assert(redis.connect({ port = srv.port }))
    assert.equal("OK", c:call("FLUSHALL"))
  end)

  after_each(function()
    if c then c:close() end
    debug.getregistry()[DEADLINE] = nil
  end)

  describe("replies", function()
    it("maps integer, bulk, status and nil", function()
      local n = c:call("INCR", "counter")
      assert.equal(1, n)
      assert.equal("integer", math.type(n))
      assert.equal("OK", c:call("SET", "k", "value"))
      assert.equal("value", c:call("GET", "k"))
      assert.equal("PONG", c:call("PING"))
      local v, err = c:call("GET", "missing")
      assert.is_nil(v)
      assert.is_nil(err)
      assert.equal(1, select("#", c:call("GET", "missing")))
    end)

    it("maps an empty array to an empty table", function()
      assert.same({}, c:call("LRANGE", "nolist", 0, -1))
    end)

    it("maps nested arrays to nested tables", function()
      local r = c:call("EVAL", "return {1, {2, {3, 'x'}}, 'y'}", 0)
      assert.same({ 1, { 2, { 3, "x" } }, "y" }, r)
    end)

    it("maps nil and error elements to false and { err = ... }", function()
      assert.equal("OK", c:call("SET", "s", "text"))
      assert.equal("OK", c:call("MULTI"))
      assert.equal("QUEUED", c:call("SET", "a", "1"))
      assert.equal("QUEUED", c:call("INCR", "s"))
      assert.equal("QUEUED", c:call("GET", "missing"))
      local r = c:call("EXEC")
      assert.equal(3, #r)
      assert.equal("OK", r[1])
      assert.matches("^ERR value is not an integer", r[2].err)
      assert.is_false(r[3])
    end)

    it("returns nil and the server's message for an error reply", function()
      local v, err = c:call("NOSUCHCOMMAND", "x")
      assert.is_nil(v)
      assert.matches("^redis 127%.0%.0%.1:%d+: ERR unknown command", err)
      c:call("SET", "s", "text")
      v, err = c:call("INCR", "s")
      assert.is_nil(v)
      assert.equal("redis 127.0.0.1:" .. srv.port .. ": ERR value is not an integer or out of range", err)
      assert.equal("PONG", c:call("PING")) -- still usable
    end)

    it("round-trips binary data with zero bytes", function()
      local key, blob = "k\0ey", "a\0b\r\n\0\255\0"
      assert.equal("OK", c:call("SET", key, blob))
      assert.equal(blob, c:call("GET", key))
      assert.equal(#blob, c:call("STRLEN", key))
      assert.is_nil(c:call("GET", "k"))
      -- an empty argument and a 1 MiB one, through call and pipeline alike
      local big = string.rep("\0x\r\n", 262144)
      assert.equal("OK", c:call("SET", "", big))
      local r = c:pipeline({ { "GET", "" }, { "SET", "e", "" }, { "STRLEN", "e" }, { "APPEND", "e", big } })
      assert.equal(big, r[1])
      assert.same({ "OK", 0, #big }, { r[2], r[3], r[4] })
    end)

    it("sends commands with many arguments", function()
      local args = {}
      for i = 1, 1000 do args[i] = i end
      assert.equal(1000, c:call("RPUSH", "many", table.unpack(args)))
      local r = c:call("LRANGE", "many", 0, -1)
      assert.equal(1000, #r)
      assert.equal("1000", r[1000])
      local cmd = { "SADD", "set" }
      for i = 1, 1000 do cmd[#cmd + 1] = "m" .. i end
      assert.same({ 1000, 1000, n = 2 }, c:pipeline({ cmd, { "SCARD", "set" } }))
    end)

    it("sends numbers as Redis expects them", function()
      c:call("SET", "i", 42)
      assert.equal("42", c:call("GET", "i"))
      c:call("SET", "f", 2.0)
      assert.equal("2", c:call("GET", "f"))
      c:call("SET", "g", 1.5)
      assert.equal("1.5", c:call("GET", "g"))
      assert.equal(1, c:call("EXPIRE", "i", 10.0))
    end)
  end)

  describe("pipeline", function()
    it("returns replies in order with n", function()
      local r = assert(c:pipeline({
        { "SET", "k", "v" }, { "GET", "k" }, { "GET", "missing" }, { "INCR", "k" },
        { "RPUSH", "l", "a", "b" }, { "LRANGE", "l", 0, -1 },
      }))
      assert.equal(6, r.n)
      assert.equal("OK", r[1])
      assert.equal("v", r[2])
      assert.is_false(r[3])
      assert.matches("^ERR value is not an integer", r[4].err)
      assert.equal(2, r[5])
      assert.same({ "a", "b" }, r[6])
    end)

    it("returns { n = 0 } for no commands", function()
      assert.same({ n = 0 }, c:pipeline({}))
    end)

    it("sends 10 000 commands in one round trip, fast", function()
      local cmds = {}
      for i = 1, 10000 do cmds[i] = { "SET", "key:" .. i, i } end
      local t0 = now()
      local r = assert(c:pipeline(cmds))
      local took = now() - t0
      assert.equal(10000, r.n)
      for i = 1, 10000 do assert.equal("OK", r[i]) end
      assert.equal(10000, c:call("DBSIZE"))
      assert.equal("10000", c:call("GET", "key:10000"))
      -- About 10 ms here; the bound leaves room for sanitizers and a loaded
      -- machine, and still catches a round trip per command.
      assert.is_true(took < 0.5, "10 000 commands took " .. took .. " s")
    end)

    it("raises on a malformed list, before sending anything", function()
      assert.has_error(function() c:pipeline("GET k") end)
      assert.has_error(function() c:pipeline({ "GET", "k" }) end,
        "bad argument #1 to 'pipeline' (command 1 is a string, not a list)")
      assert.has_error(function() c:pipeline({ {} }) end,
        "bad argument #1 to 'pipeline' (command 1 is empty)")
      assert.has_error(function() c:pipeline({ { "SET", "k", "v" }, { "SET", "k", true } }) end,
        "bad argument #1 to 'pipeline' (command 2, argument 3: string or number expected, got boolean)")
      assert.is_nil(c:call("GET", "k")) -- the first SET was never sent
      assert.equal("PONG", c:call("PING"))
    end)
  end)

  describe("connect", function()
    it("is refused as an expected failure", function()
      local port = procs.closed_port()
      local cl, err = redis.connect({ port = port })
      assert.is_nil(cl)
      assert.equal("redis 127.0.0.1:" .. port .. ": connection refused", err)
    end)

    it("selects a database", function()
      local d = assert(redis.connect({ port = srv.port, db = 3 }))
      assert.equal("OK", d:call("SET", "in3", "yes"))
      d:close()
      assert.is_nil(c:call("GET", "in3"))
      assert.equal("yes", procs.cli(srv.port, "-n", "3", "GET", "in3"))
      local bad, err = redis.connect({ port = srv.port, db = 99 })
      assert.is_nil(bad)
      assert.matches("^redis 127%.0%.0%.1:%d+: SELECT failed: ERR DB index is out of range", err)
    end)

    it("connects over a unix socket", function()
      local dir = procs.tmpdir()
      local sock = dir .. "/redis.sock"
      local u = procs.start_redis({ "unixsocket " .. sock, "unixsocketperm 700" })
      local ok, e = pcall(function()
        local cl = assert(redis.connect({ path = sock }))
        assert.equal("redis client (" .. sock .. ")", tostring(cl))
        assert.equal("PONG", cl:call("PING"))
        cl:close()
        local none, err = redis.connect({ path = dir .. "/nope.sock" })
        assert.is_nil(none)
        assert.equal("redis " .. dir .. "/nope.sock: no such file or directory", err)
      end)
      u.stop()
      procs.rmtree(dir)
      assert(ok, e)
    end)

    it("names the client in tostring", function()
      assert.equal("redis client (127.0.0.1:" .. srv.port .. ")", tostring(c))
    end)
  end)

  describe("auth", function()
    local a

    setup(function()
      a = procs.start_redis({ "requirepass s3cret", "user alice on >pw ~* +@all" })
    end)

    teardown(function()
      if a then a.stop() end
    end)

    it("authenticates with a password", function()
      local cl = assert(redis.connect({ port = a.port, password = "s3cret" }))
      assert.equal("PONG", cl:call("PING"))
      cl:close()
      -- "" is no password, as the config documents it
      cl = assert(redis.connect({ port = a.port, password = "" }))
      local v, err = cl:call("PING")
      assert.is_nil(v)
      assert.matches("^redis 127%.0%.0%.1:%d+: NOAUTH", err)
      cl:close()
    end)

    it("returns nil, msg for a wrong password", function()
      local cl, err = redis.connect({ port = a.port, password = "wrong" })
      assert.is_nil(cl)
      assert.matches("^redis 127%.0%.0%.1:%d+: AUTH failed: WRONGPASS", err)
      assert.is_nil(err:find("wrong", 1, true)) -- the password stays out of logs
    end)

    it("authenticates an ACL user with username and password", function()
      local cl = assert(redis.connect({ port = a.port, username = "alice", password = "pw" }))
      assert.equal("alice", cl:call("ACL", "WHOAMI"))
      cl:close()
      local none, err = redis.connect({ port = a.port, username = "alice", password = "nope" })
      assert.is_nil(none)
      assert.matches("AUTH failed: WRONGPASS", err)
    end)
  end)

  describe("reply cap", function()
    -- A server that answers any command with an announced bulk of `n`
    -- bytes, then streams filler without end.
    local function start_liar(header)
      return start_listener("c.recv(100); c.sendall(b'" .. header .. "\\r\\n'); " ..
        "[c.sendall(b'x' * 65536) for _ in iter(int, 1)]")
    end

    -- Resident set of this process, KiB.
    local function rss_kib()
      return tonumber(procs.read("/proc/self/status"):match("VmRSS:%s*(%d+)"))
    end

    it("refuses an announced 8 GB bulk at once, with a clear error and no memory growth", function()
      local liar = start_liar("$8000000000")
      local before = rss_kib()
      -- a long timeout: the cap must stop this, not the clock
      local cl = assert(redis.connect({ port = liar.port, timeout = 60 }))
      local v, err = cl:call("GET", "k")
      liar.stop()
      assert.is_nil(v)
      assert.equal("redis 127.0.0.1:" .. liar.port .. ": reply larger than 64 MiB (max_reply) (client closed)", err)
      assert.is_true(rss_kib() - before < 32 * 1024, "RSS grew by " .. (rss_kib() - before) .. " KiB")
      assert.equal("redis client (closed)", tostring(cl))
    end)

    it("bounds the bytes of one reply by max_reply (MiB), announced or not", function()
      -- an array announcing more elements than the cap can hold
      local liar = start_liar("*100000000")
      local cl = assert(redis.connect({ port = liar.port, max_reply = 1 }))
      local v, err = cl:call("LRANGE", "k", 0, -1)
      assert.is_nil(v)
      assert.matches(": reply larger than 1 MiB %(max_reply%) %(client closed%)$", err)
      liar.stop()
      -- a plausible array whose elements stream on and on
      liar = start_listener("c.recv(100); c.sendall(b'*1000000\\r\\n'); " ..
        "[c.sendall(b'$5\\r\\nhello\\r\\n' * 4096) for _ in iter(int, 1)]")
      cl = assert(redis.connect({ port = liar.port, max_reply = 1 }))
      v, err = cl:call("LRANGE", "k", 0, -1)
      assert.is_nil(v)
      assert.matches(": reply larger than 1 MiB %(max_reply%) %(client closed%)$", err)
      liar.stop()
    end)

    it("lets replies up to the cap through, and checks the option", function()
      c:call("SET", "big", string.rep("v", 600 * 1024))
      local small = assert(redis.connect({ port = srv.port, max_reply = 0.5 }))
      local v, err = small:call("GET", "big")
      assert.is_nil(v)
      assert.matches("reply larger than 0%.5 MiB", err)
      small = assert(redis.connect({ port = srv.port, max_reply = 1 }))
      assert.equal(600 * 1024, #small:call("GET", "big"))
      small:close()
      assert.has_error(function() redis.connect({ max_reply = 0 }) end)
      assert.has_error(function() redis.connect({ max_reply = "64" }) end)
      assert.has_error(function() redis.connect({ max_reply = 1 / 0 }) end)
    end)
  end)

  describe("timeouts", function()
    local silent

    setup(function()
      silent = start_silent()
    end)

    teardown(function()
      if silent then silent.stop() end
    end)

    it("bounds a call to a server that never answers", function()
      local cl = assert(redis.connect({ port = silent.port, timeout = 1 }))
      local t0 = now()
      local v, err = cl:call("PING")
      local took = now() - t0
      assert.is_nil(v)
      assert.equal("redis 127.0.0.1:" .. silent.port .. ": timed out after 1 s (client closed)", err)
      assert.is_true(took >= 0.9 and took < 3, "took " .. took .. " s")
      assert.equal("redis client (closed)", tostring(cl))
    end)

    it("bounds a pipeline the same way", function()
      local cl = assert(redis.connect({ port = silent.port, timeout = 0.5 }))
      local t0 = now()
      local v, err = cl:pipeline({ { "PING" }, { "PING" } })
      assert.is_true(now() - t0 < 2.5)
      assert.is_nil(v)
      assert.matches("timed out after 0.5 s %(client closed%)$", err)
    end)

    it("bounds the whole reply, not each read", function()
      -- One byte of a 1000-byte bulk string every 0.2 s: every read(2)
      -- returns quickly, but the reply never completes.
      local drip = start_listener(
        "c.recv(100); c.sendall(b'$1000\\r\\n'); [(c.sendall(b'x'), time.sleep(0.2)) for _ in range(5000)]")
      local ok, e = pcall(function()
        local cl = assert(redis.connect({ port = drip.port, timeout = 1 }))
        local t0 = now()
        local v, err = cl:call("GET", "k")
        local took = now() - t0
        assert.is_nil(v)
        assert.matches("timed out after 1 s %(client closed%)$", err)
        assert.is_true(took < 3, "took " .. took .. " s")
      end)
      drip.stop()
      assert(ok, e)
    end)

    it("bounds AUTH during connect by connect_timeout", function()
      local t0 = now()
      local cl, err = redis.connect({ port = silent.port, password = "x", connect_timeout = 1, timeout = 30 })
      local took = now() - t0
      assert.is_nil(cl)
      assert.equal("redis 127.0.0.1:" .. silent.port .. ": timed out after 1 s", err)
      assert.is_true(took >= 0.9 and took < 3, "took " .. took .. " s")
    end)

    it("uses timeout for connect when connect_timeout is absent", function()
      local t0 = now()
      local cl = redis.connect({ port = silent.port, password = "x", timeout = 0.5 })
      assert.is_nil(cl)
      assert.is_true(now() - t0 < 2.5)
    end)
  end)

  describe("time budget", function()
    it("fails at once when the budget is spent, without closing", function()
      local reg = debug.getregistry()
      reg[DEADLINE] = 0 -- long past
      local cl, err = redis.connect({ port = srv.port })
      assert.is_nil(cl)
      assert.equal("redis 127.0.0.1:" .. srv.port .. ": time budget exhausted", err)
      local v
      v, err = c:call("PING")
      assert.is_nil(v)
      assert.equal("redis 127.0.0.1:" .. srv.port .. ": time budget exhausted", err)
      v, err = c:pipeline({ { "PING" } })
      assert.is_nil(v)
      assert.matches("time budget exhausted$", err)
      reg[DEADLINE] = nil
      assert.equal("PONG", c:call("PING"))
    end)

    it("clamps a long timeout to the budget left", function()
      local silent = start_silent()
      local ok, e = pcall(function()
        local cl = assert(redis.connect({ port = silent.port, timeout = 30 }))
        debug.getregistry()[DEADLINE] = monotonic() + 1
        local t0 = now()
        local v, err = cl:call("PING")
        local took = now() - t0
        assert.is_nil(v)
        assert.matches("time budget exhausted %(client closed%)$", err)
        assert.is_true(took < 3, "took " .. took .. " s")
      end)
      silent.stop()
      assert(ok, e)
    end)
  end)

  describe("connection loss", function()
    it("closes the client when the server drops it", function()
      local id = c:call("CLIENT", "ID")
      local other = assert(redis.connect({ port = srv.port }))
      assert.equal(1, other:call("CLIENT", "KILL", "ID", id))
      other:close()
      local v, err = c:call("PING")
      assert.is_nil(v)
      assert.matches("^redis 127%.0%.0%.1:%d+: .+ %(client closed%)$", err)
      assert.error_matches(function() c:call("PING") end, "^calling 'call' on bad self %(attempt to use a closed redis client%)$")
    end)

    it("ignores SIGPIPE so a write to a dead socket cannot kill the process", function()
      local status = assert(procs.read("/proc/self/status"))
      local ign = tonumber(status:match("SigIgn:%s*(%x+)"), 16)
      assert.equal(1, (ign >> 12) & 1) -- SIGPIPE is 13, bit 12
    end)

    it("treats RESP3 as a protocol error and closes", function()
      local v, err = c:call("HELLO", "3")
      assert.is_nil(v)
      assert.matches("protocol error.*%(client closed%)$", err)
      assert.equal("redis client (closed)", tostring(c))
      assert.error_matches(function() c:call("PING") end, "^calling 'call' on bad self %(attempt to use a closed redis client%)$")
    end)
  end)

  describe("lifetime and misuse", function()
    it("closes idempotently and raises on use after close", function()
      assert.is_true(c:close())
      assert.is_true(c:close())
      assert.equal("redis client (closed)", tostring(c))
      assert.error_matches(function() c:call("PING") end, "^calling 'call' on bad self %(attempt to use a closed redis client%)$")
      assert.error_matches(function() c:pipeline({ { "PING" } }) end,
        "^calling 'pipeline' on bad self %(attempt to use a closed redis client%)$")
    end)

    it("closes through <close>", function()
      local kept
      do
        local cl <close> = assert(redis.connect({ port = srv.port }))
        kept = cl
        assert.equal("PONG", cl:call("PING"))
      end
      assert.equal("redis client (closed)", tostring(kept))
    end)

    it("raises on unknown options and wrong types", function()
      assert.has_error(function() redis.connect({ hots = "x" }) end,
        "bad argument #1 to 'connect' (unknown option 'hots')")
      assert.has_error(function() redis.connect({ enabled = true }) end)
      assert.has_error(function() redis.connect({ [1] = "x" }) end)
      assert.has_error(function() redis.connect("127.0.0.1") end)
      assert.has_error(function() redis.connect({ port = "6379" }) end)
      assert.has_error(function() redis.connect({ port = 70000 }) end)
      assert.has_error(function() redis.connect({ db = -1 }) end)
      assert.has_error(function() redis.connect({ timeout = 0 }) end)
      assert.has_error(function() redis.connect({ timeout = "1" }) end)
      assert.has_error(function() redis.connect({ connect_timeout = 0 / 0 }) end)
      assert.has_error(function() redis.connect({ host = false }) end)
      assert.has_error(function() redis.connect({ path = "/tmp/x", port = 1 }) end)
      assert.has_error(function() redis.connect({ username = "alice" }) end)
    end)

    it("raises on a wrong argument type to call", function()
      assert.has_error(function() c:call() end)
      assert.has_error(function() c:call("SET", "k", true) end,
        "bad argument #3 to 'call' (string or number expected, got boolean)")
      assert.has_error(function() c:call("SET", "k", {}) end)
      assert.has_error(function() c:call("GET", nil) end)
      assert.has_error(function() c.call(nil, "PING") end)
      assert.equal("PONG", c:call("PING")) -- nothing half-sent
    end)
  end)
end)
