-- examples/rules/swarm-replace-replica.lua: a replica down -> a new Redis
-- container replicating the current master, once across the Sentinels and
-- at most swarm.max_per_hour per pod and hour.
local testing = require("eventilator.testing")
local json = require("cjson")

local T = 1795600000
local API = "http://localhost/v1.41"
local CREATE = API .. "/containers/create?name=redis-pod1-" .. T
local ID = "4f1c2d3e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
local REPLICA_DOWN = { "+sdown", "slave 127.0.0.1:17000 127.0.0.1 17000 @ pod1 127.0.0.1 17002" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel, time = T }
end

describe("swarm-replace-replica.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("swarm-replace-replica.lua"),
                      config = { docker = { socket = "/var/run/docker.sock" },
                                 swarm = { image = "redis:7", network = "redis-net", max_per_hour = 3 } } }
    t.redis.answer("EVAL", 1) -- flap.limit: the first replacement this hour
    t.http.answer("POST " .. CREATE, { status = 201, body = json.encode({ Id = ID, Warnings = {} }) })
    t.http.answer("POST " .. API .. "/containers/" .. ID .. "/start", { status = 204 })
  end)
  after_each(function() t:close() end)

  it("starts a replica of the master, once across the Sentinels", function()
    assert.same({ "ok" }, from(t, "pid:11", REPLICA_DOWN).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", REPLICA_DOWN).outcomes)
    assert.equal(2, #t.http.sent)
    local create = t.http.sent[1]
    assert.same({ "POST", CREATE, "/var/run/docker.sock" }, { create.method, create.url, create.unix_socket })
    local body = json.decode(create.body)
    assert.equal("redis:7", body.Image)
    assert.same({ "redis-server", "--replicaof", "127.0.0.1", "17002" }, body.Cmd)
    assert.equal("redis-net", body.HostConfig.NetworkMode)
    assert.equal(API .. "/containers/" .. ID .. "/start", t.http.sent[2].url)
  end)

  it("starts nothing past max_per_hour", function()
    t.redis.answer("EVAL", -1)
    assert.same({ "ok" }, from(t, "pid:11", REPLICA_DOWN).outcomes)
    assert.same({}, t.http.sent)
  end)

  it("leaves a master's +sdown alone", function()
    assert.same({ "ok" }, from(t, "pid:11", { "+sdown", "master pod1 127.0.0.1 17000" }).outcomes)
    assert.same({}, t.http.sent)
  end)

  it("fails, so Sentinel retries, when Docker refuses", function()
    t.http.answer("POST " .. CREATE, { status = 500, body = '{"message":"no space left on device"}' })
    local r = from(t, "pid:11", REPLICA_DOWN)
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("no space left on device", r.handlers[1].error)
  end)
end)
