-- The example rules (examples/rules/): each loads with `eventilator check`
-- beside the default rules, and the cloud VM example orders one VM per
-- outage, in Hetzner Cloud's POST /v1/servers shape, within its hourly cap.
local procs = require("procs")
local runner = require("runner")
local standin = require("standin")

local EXAMPLES = { "haproxy-follow-master.lua", "swarm-replace-replica.lua", "flap-migrate.lua",
  "consul-master-kv.lua", "cloud-replica-vm.lua" }

local function copy(name, ctx)
  procs.write(ctx.rules .. "/" .. name, assert(procs.read(procs.src .. "/examples/rules/" .. name)))
end

describe("example rules", function()
  it("each is under 40 lines and passes `eventilator check` beside the default rules", function()
    local ctx = runner.new()
    finally(function() ctx:cleanup() end)
    procs.shipped_rules(ctx.rules)
    for _, name in ipairs(EXAMPLES) do
      local text = procs.read(procs.src .. "/examples/rules/" .. name)
      local _, lines = text:gsub("\n", "")
      assert.is_true(lines < 40, name .. " has " .. lines .. " lines")
      copy(name, ctx)
    end
    ctx:config([[
haproxy = { socket = "/run/haproxy/admin.sock", backends = { mymaster = "redis/master" } }
swarm = { image = "redis:7", max_per_hour = 2 }
hcloud = { token = "x", location = "fsn1", ssh_keys = { "ops" } }
consul = { token = "t" }
]])
    local rc, log, out = ctx:run("eventilator", "check")
    assert.equal(0, rc, log .. out)
    for _, name in ipairs(EXAMPLES) do assert.matches(name, out, 1, true) end
    assert.matches("+switch-master", out, 1, true)
    assert.matches("+sdown", out, 1, true)
  end)

  describe("cloud-replica-vm.lua", function()
    local api, store, ctx

    setup(function()
      api = standin.start()
      store = procs.start_redis()
      ctx = runner.new()
      copy("cloud-replica-vm.lua", ctx)
      ctx:config(string.format([[
redis = { port = %d }
hcloud = { url = "%s/v1", token = "hc-token", location = "fsn1", ssh_keys = { "ops" }, max_per_hour = 1 }
]], store.port, api.url))
    end)

    teardown(function()
      api.stop()
      store.stop()
      ctx:cleanup()
    end)

    local function sdown(port)
      return string.format("slave 10.0.0.7:%d 10.0.0.7 %d @ cache_1 10.0.0.5 6379", port, port)
    end

    it("orders a VM whose cloud-init replicates the master, once for three Sentinels, within the cap", function()
      api.reply({ status = 201, body = { server = { id = 42, name = "x" }, action = { id = 1 } } })
      for _ = 1, 3 do assert.equal(0, (ctx:run("eventilator", "+sdown", sdown(6379)))) end
      local r = api.requests()
      assert.equal(1, #r)
      assert.equal("POST", r[1].method)
      assert.equal("/v1/servers", r[1].path)
      assert.equal("Bearer hc-token", r[1].headers.authorization)
      assert.matches("^application/json", r[1].headers["content-type"])
      local b = r[1].json
      assert.matches("^redis%-cache%-1%-%d+$", b.name) -- a valid host name
      assert.equal("cx22", b.server_type)
      assert.equal("debian-12", b.image)
      assert.equal("fsn1", b.location)
      assert.same({ "ops" }, b.ssh_keys)
      assert.same({ role = "redis-replica", pod = "cache_1" }, b.labels)
      assert.matches("^#cloud%-config\n", b.user_data)
      assert.matches("packages: %[redis%-server%]", b.user_data)
      assert.matches("replicaof 10.0.0.5 6379", b.user_data, 1, true)

      -- another replica down within the hour: the cap (1) holds
      local rc, log = ctx:run("eventilator", "+sdown", sdown(6380))
      assert.equal(0, rc)
      assert.matches("no more", log)
      assert.equal(1, #api.requests())
    end)

    it("fails (exit 1) on the API's refusal", function()
      procs.cli(store.port, "flushall")
      api.clear()
      api.reply({ status = 401, body = { error = { code = "unauthorized", message = "unable to authenticate" } } })
      local rc, log = ctx:run("eventilator", "+sdown", sdown(6381))
      assert.equal(1, rc)
      assert.matches("hcloud: HTTP 401", log, 1, true)
    end)
  end)
end)
