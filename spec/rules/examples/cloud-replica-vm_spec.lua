-- examples/rules/cloud-replica-vm.lua: a replica down -> a Hetzner Cloud VM
-- whose cloud-init makes it a replica of the current master.
local testing = require("eventilator.testing")
local json = require("cjson")

local T = 1795600000
local SERVERS = "https://api.hetzner.cloud/v1/servers"
local REPLICA_DOWN = { "+sdown", "slave 127.0.0.1:17000 127.0.0.1 17000 @ pod1 127.0.0.1 17002" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel, time = T }
end

describe("cloud-replica-vm.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("cloud-replica-vm.lua"),
                      config = { hcloud = { token = "hc-t0k3n", location = "fsn1", ssh_keys = { "ops" },
                                            max_per_hour = 3 } } }
    t.redis.answer("EVAL", 1) -- flap.limit: the first VM this hour
    t.http.answer("POST " .. SERVERS, { status = 201, body = '{"server":{"id":42}}' })
  end)
  after_each(function() t:close() end)

  it("orders one VM replicating the master, once across the Sentinels", function()
    assert.same({ "ok" }, from(t, "pid:11", REPLICA_DOWN).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", REPLICA_DOWN).outcomes)
    assert.equal(1, #t.http.sent)
    local req = t.http.sent[1]
    assert.same({ "POST", SERVERS, "Bearer hc-t0k3n" }, { req.method, req.url, req.headers.Authorization })
    local body = json.decode(req.body)
    assert.same({ "redis-pod1-" .. T, "cx22", "debian-12", "fsn1" },
                { body.name, body.server_type, body.image, body.location })
    assert.same({ "ops" }, body.ssh_keys)
    assert.same({ role = "redis-replica", pod = "pod1" }, body.labels)
    assert.truthy(body.user_data:find("replicaof 127.0.0.1 17002", 1, true))
  end)

  it("orders nothing past max_per_hour", function()
    t.redis.answer("EVAL", -1)
    local r = from(t, "pid:11", REPLICA_DOWN)
    assert.same({ "ok" }, r.outcomes)
    assert.same({}, t.http.sent)
    assert.matches("no more", r.log)
  end)

  it("fails, so Sentinel retries, when the API refuses", function()
    t.http.answer("POST " .. SERVERS, { status = 422, body = '{"error":{"code":"resource_limit_exceeded"}}' })
    local r = from(t, "pid:11", REPLICA_DOWN)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("HTTP 422", r.handlers[1].error)
  end)
end)
