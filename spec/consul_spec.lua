-- eventilator.consul against an HTTP stand-in playing Consul's KV API: the
-- path, body and token it gets; Consul's refusals; a Consul that is down
-- (the call exits 1, so Sentinel retries); and the example rule end to end.
local procs = require("procs")
local runner = require("runner")
local standin = require("standin")

local CFG = require("hostless") -- the config the modules see

local consul = require("eventilator.consul")

local function switch(extra)
  local e = {
    name = "+switch-master", mode = "eventilator", pod = "cache1",
    text = "cache1 10.0.0.5 6379 10.0.0.6 6380",
    old_master = { ip = "10.0.0.5", port = 6379 }, new_master = { ip = "10.0.0.6", port = 6380 },
    master = { name = "cache1", ip = "10.0.0.6", port = 6380 },
  }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

describe("eventilator.consul", function()
  local api

  setup(function() api = standin.start() end)
  teardown(function() api.stop() end)

  before_each(function()
    api.clear()
    api.reply({ status = 200, body = "true", headers = { ["Content-Type"] = "application/json" } })
    CFG.consul = { url = api.url, prefix = "redis", token = "s3cret-token", timeout = 2 }
  end)

  it("PUTs ip:port to /v1/kv/<prefix>/<pod> with the token", function()
    assert.is_true(consul.put_master(switch()))
    local r = api.requests()
    assert.equal(1, #r)
    assert.equal("PUT", r[1].method)
    assert.equal("/v1/kv/redis/cache1", r[1].path)
    assert.equal("10.0.0.6:6380", r[1].body)
    assert.equal("s3cret-token", r[1].headers["x-consul-token"])
  end)

  it("writes the leader's client-reconfig, skips observers and other events", function()
    assert.is_true(consul.put_master(switch({ name = "client-reconfig", role = "observer" })))
    assert.is_true(consul.put_master(switch({ name = "+sdown" })))
    assert.equal(0, #api.requests())
    assert.is_true(consul.put_master(switch({ name = "client-reconfig", role = "leader",
      new_master = { ip = "::1", port = 6381 } })))
    assert.equal("[::1]:6381", api.requests()[1].body)
  end)

  it("sends no token header without a token, and takes opts over config", function()
    CFG.consul.token = nil
    assert.is_true(consul.put_master(switch(), { prefix = "/svc/redis/" }))
    local r = api.requests()[1]
    assert.equal("/v1/kv/svc/redis/cache1", r.path)
    assert.is_nil(r.headers["x-consul-token"])
  end)

  it("fails with Consul's answer on a refusal", function()
    api.reply({ status = 403, body = "Permission denied" })
    local ok, err = consul.put_master(switch())
    assert.is_nil(ok)
    assert.matches("HTTP 403: Permission denied", err, 1, true)
    api.reply({ status = 200, body = "false" })
    ok, err = consul.put_master(switch())
    assert.is_nil(ok)
    assert.matches("answered false", err, 1, true)
  end)

  it("a down Consul fails the handler, and the call exits 1", function()
    local ctx = runner.new()
    finally(function() ctx:cleanup() end)
    local store = procs.start_redis()
    finally(function() store.stop() end)
    ctx:config(string.format("redis = { port = %d }\nconsul = { url = %q, token = \"t\" }\n",
      store.port, "http://127.0.0.1:" .. procs.closed_port()))
    procs.write(ctx.rules .. "/consul-master-kv.lua", procs.read(procs.src .. "/examples/rules/consul-master-kv.lua"))
    local rc, log = ctx:run("eventilator", "+switch-master", "cache1 10.0.0.5 6379 10.0.0.6 6380")
    assert.equal(1, rc)
    assert.matches("consul%-master%-kv%.lua:%d+ failed: .*consul: http PUT", log)

    -- and with Consul up, the example rule writes once for three Sentinels' reports
    ctx:config(string.format("redis = { port = %d }\nconsul = { url = %q, token = \"t\" }\n", store.port, api.url))
    procs.sh("redis-cli -p " .. store.port .. " flushall")
    for _ = 1, 3 do
      rc = ctx:run("eventilator", "+switch-master", "cache1 10.0.0.5 6379 10.0.0.6 6380")
      assert.equal(0, rc)
    end
    local r = api.requests()
    assert.equal(1, #r)
    assert.equal("/v1/kv/redis/cache1", r[1].path)
    assert.equal("10.0.0.6:6380", r[1].body)
    assert.equal("t", r[1].headers["x-consul-token"])
  end)
end)
