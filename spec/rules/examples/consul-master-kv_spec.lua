-- examples/rules/consul-master-kv.lua: <prefix>/<pod> = "ip:port" of the
-- new master in Consul KV, once per switch.
local testing = require("eventilator.testing")

local KV = "http://consul.test:8500/v1/kv/redis/pod1"
local SWITCH = { "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel }
end

describe("consul-master-kv.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("consul-master-kv.lua"),
                      config = { consul = { url = "http://consul.test:8500", prefix = "redis", token = "t0k3n" } } }
    t.http.answer("PUT " .. KV, { status = 200, body = "true" })
  end)
  after_each(function() t:close() end)

  it("writes the new master on +switch-master, once across the Sentinels", function()
    assert.same({ "ok" }, from(t, "pid:11", SWITCH).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", SWITCH).outcomes)
    assert.equal(1, #t.http.sent)
    local req = t.http.sent[1]
    assert.same({ "PUT", KV, "127.0.0.1:17002", "t0k3n" }, { req.method, req.url, req.body, req.headers["X-Consul-Token"] })
  end)

  it("writes it from the leader's client-reconfig, not an observer's", function()
    t:call("reconfigurator", "pod1", "observer", "start", "127.0.0.1", "17000", "127.0.0.1", "17002")
    assert.same({}, t.http.sent)
    local r = t:call("reconfigurator", "pod1", "leader", "start", "127.0.0.1", "17000", "127.0.0.1", "17002")
    assert.same({ "ok" }, r.outcomes)
    assert.equal("127.0.0.1:17002", t.http.sent[1].body)
  end)

  it("fails, so Sentinel retries, when Consul answers 500", function()
    t.http.answer("PUT " .. KV, { status = 500, body = "No cluster leader" })
    local r = from(t, "pid:11", SWITCH)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("No cluster leader", r.handlers[1].error)
  end)
end)
