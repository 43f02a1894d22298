-- eventilator.haproxy against a real HAProxy: the runtime API commands and
-- their answers (HAProxy's own text on a refusal); then the example rule
-- haproxy-follow-master.lua (the two-server layout, a wrong backend); the
-- real failover is spec/haproxy_failover_spec.lua.
local procs = require("procs")
local runner = require("runner")
local haproxy_proc = require("haproxy")

local CFG = require("hostless") -- the config the modules see

local haproxy = require("eventilator.haproxy")

local by_name = haproxy_proc.by_name

describe("eventilator.haproxy", function()
  local h

  setup(function()
    h = haproxy_proc.start({ backends = { redis = { master = 7001 }, pair = { a = 7002, b = 7003 } } })
  end)
  teardown(function() h.stop() end)
  before_each(function()
    CFG.haproxy = { socket = h.socket, backends = { cache = "redis/master" }, timeout = 2 }
  end)

  it("set_server changes the address, as servers() then shows", function()
    assert.is_true(haproxy.set_server("redis", "master", "127.0.0.2", 7101))
    assert.is_true(haproxy.set_server("redis", "master", "127.0.0.2", 7101)) -- nothing to change is fine
    local s = by_name(assert(haproxy.servers("redis"))).master
    assert.equal("127.0.0.2", s.addr)
    assert.equal(7101, s.port)
    assert.equal("redis", s.be_name)
  end)

  it("works over a host:port admin socket too", function()
    assert.is_true(haproxy.set_server("redis", "master", "127.0.0.1", 7102, { socket = h.tcp_socket }))
    assert.equal(7102, by_name(assert(haproxy.servers("redis"))).master.port)
  end)

  it("set_state and shutdown_sessions", function()
    assert.is_true(haproxy.set_state("pair", "a", "maint"))
    assert.is_true(haproxy.set_state("pair", "b", "drain"))
    local s = by_name(assert(haproxy.servers("pair")))
    assert.equal(1, s.a.admin_state & 1)  -- SRV_ADMF_FMAINT
    assert.equal(8, s.b.admin_state & 8)  -- SRV_ADMF_DRAIN
    assert.is_true(haproxy.set_state("pair", "a", "ready"))
    assert.is_true(haproxy.set_state("pair", "b", "ready"))
    s = by_name(assert(haproxy.servers("pair")))
    assert.equal(0, s.a.admin_state)
    assert.equal(0, s.b.admin_state)
    assert.is_true(haproxy.shutdown_sessions("pair", "a"))
  end)

  -- pair's servers have no checks: a forced verdict stays until the next
  -- one, which stands for the checks of a dead or demoted master.
  it("set_health forces a server down and up, checks or not", function()
    assert.is_true(haproxy.set_health("pair", "a", "down"))
    assert.equal(0, by_name(assert(haproxy.servers("pair"))).a.op_state)
    assert.is_true(haproxy.set_health("pair", "a", "up"))
    assert.equal(2, by_name(assert(haproxy.servers("pair"))).a.op_state)
    assert.is_true(haproxy.set_health("pair", "a", "up")) -- already up is fine
    local ok, err = haproxy.set_health("pair", "nope", "up")
    assert.is_nil(ok)
    assert.equal("haproxy: set server pair/nope health up: No such server.", err)
    assert.has_error(function() haproxy.set_health("pair", "a", "ready") end)
  end)

  it("a wrong backend or server is nil, err with HAProxy's text", function()
    local ok, err = haproxy.set_server("nope", "master", "127.0.0.1", 7001)
    assert.is_nil(ok)
    assert.equal("haproxy: set server nope/master addr 127.0.0.1 port 7001: No such backend.", err)
    ok, err = haproxy.set_state("redis", "nope", "maint")
    assert.is_nil(ok)
    assert.matches("No such server.", err, 1, true)
    ok, err = haproxy.servers("nope")
    assert.is_nil(ok)
    assert.matches("Can't find backend.", err, 1, true)
    ok, err = haproxy.shutdown_sessions("nope", "x")
    assert.is_nil(ok)
    assert.matches("No such backend.", err, 1, true)
  end)

  it("an unreachable socket is nil, err; misuse raises", function()
    local ok, err = haproxy.servers("redis", { socket = h.dir .. "/none.sock" })
    assert.is_nil(ok)
    assert.matches("^haproxy: tcp .*no such file", err)
    assert.has_error(function() haproxy.set_state("redis", "master", "down") end)
    assert.has_error(function() haproxy.set_server("redis", "master", "127.0.0.1", 70000) end)
    assert.has_error(function() haproxy.command("show info\nshutdown sessions server redis/master") end)
  end)

  it("repoint(ev) uses backends[pod] and routes to the new master at once, down as it was", function()
    local ev = { name = "+switch-master", pod = "cache",
      old_master = { ip = "127.0.0.1", port = 7102 }, new_master = { ip = "127.0.0.3", port = 7103 } }
    assert.is_true(haproxy.set_health("redis", "master", "down")) -- as a check of the dead master leaves it
    assert.is_true(haproxy.repoint(ev))
    local s = by_name(assert(haproxy.servers("redis"))).master
    assert.equal("127.0.0.3", s.addr)
    assert.equal(7103, s.port)
    assert.equal(2, s.op_state)
    ev.pod = "other"
    local ok, err = haproxy.repoint(ev)
    assert.is_nil(ok)
    assert.matches("no haproxy.backends entry for pod other", err, 1, true)
  end)

  describe("haproxy-follow-master.lua", function()
    local ctx, store

    setup(function()
      ctx = runner.new()
      store = procs.start_redis()
      procs.write(ctx.rules .. "/haproxy-follow-master.lua",
        procs.read(procs.src .. "/examples/rules/haproxy-follow-master.lua"))
    end)
    teardown(function()
      ctx:cleanup()
      store.stop()
    end)

    local function config(backends)
      ctx:config(string.format("redis = { port = %d }\nhaproxy = { socket = %q, backends = { %s } }\n",
        store.port, h.socket, backends))
    end

    it("with a backend of two servers, readies the new master's and puts the old one's in maint", function()
      config('cache = "pair"')
      haproxy.set_state("pair", "b", "maint")
      local rc, log = ctx:run("eventilator", "+switch-master", "cache 127.0.0.1 7002 127.0.0.1 7003")
      assert.equal(0, rc, log)
      local s = by_name(assert(haproxy.servers("pair")))
      assert.equal(1, s.a.admin_state & 1)
      assert.equal(0, s.b.admin_state)
    end)

    it("routes to the new master's server at once when its checks had it down", function()
      config('cache = "pair"')
      assert.is_true(haproxy.set_state("pair", "a", "ready"))
      assert.is_true(haproxy.set_health("pair", "a", "down")) -- a replica, failing a role check
      local rc, log = ctx:run("eventilator", "+switch-master", "cache 127.0.0.1 7003 127.0.0.1 7002")
      assert.equal(0, rc, log)
      local s = by_name(assert(haproxy.servers("pair")))
      assert.equal(0, s.a.admin_state)
      assert.equal(2, s.a.op_state)
      assert.equal(1, s.b.admin_state & 1)
    end)

    it("a wrong backend fails the call with HAProxy's text: exit 1", function()
      config('cache = "nope/master"')
      local rc, log = ctx:run("eventilator", "+switch-master", "cache 127.0.0.1 7002 127.0.0.1 7004")
      assert.equal(1, rc)
      assert.matches("No such backend.", log, 1, true)
    end)
  end)
end)
