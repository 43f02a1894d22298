-- eventilator.docker against a stand-in Docker Engine API on a unix socket
-- (spec/support/dockerd.py, which checks every request against the API and
-- really starts redis-server for a Redis container); then the example rule
-- swarm-replace-replica.lua with a real constellation: a replica goes down,
-- a replacement starts as a replica of the master, the Sentinels see it, and
-- the hourly cap holds.
local procs = require("procs")
local constellation = require("constellation")
local json = require("cjson")

local CFG = require("hostless") -- the config the modules see

local docker = require("eventilator.docker")

-- Start dockerd.py; returns a handle with socket, log, records(), stop().
local function dockerd(extra)
  local d = { dir = procs.tmpdir() }
  d.socket, d.log = d.dir .. "/docker.sock", d.dir .. "/docker.jsonl"
  d.pid = procs.spawn(string.format("env -u LD_PRELOAD python3 %s --unix %s --log %s --dir %s %s",
    procs.quote(procs.src .. "/spec/support/dockerd.py"), procs.quote(d.socket), procs.quote(d.log),
    procs.quote(d.dir), extra or ""), d.dir .. "/dockerd.out")
  procs.wait(function() return procs.sh("test -S " .. procs.quote(d.socket) .. " && echo y"):match("y") end,
    30, "dockerd.py socket")
  function d.records(key)
    local out = {}
    for l in (procs.read(d.log) or ""):gmatch("[^\n]+") do
      local r = json.decode(l)
      if not key or r[key] ~= nil then out[#out + 1] = r end
    end
    return out
  end
  d.stop = procs.stopper(d)
  return d
end

local function problems(d)
  local out = {}
  for _, r in ipairs(d.records("problem")) do out[#out + 1] = r.problem .. " (" .. r.path .. ")" end
  return table.concat(out, "\n")
end

describe("eventilator.docker", function()
  local d

  before_each(function()
    d = dockerd("--service cache --conflict-once --image-missing")
    CFG.docker = { socket = d.socket, api = "v1.41", timeout = 5 }
  end)
  after_each(function()
    assert.equal("", problems(d))
    d.stop()
  end)

  it("service(name) returns the spec, Version.Index and ID", function()
    local spec, index, id = docker.service("cache")
    assert.equal("cache", spec.Name)
    assert.equal(11, index)
    assert.matches("^%x+$", id)
    local none, err = docker.service("nope")
    assert.is_nil(none)
    assert.equal("docker: GET /services/nope: service nope not found", err)
  end)

  it("update sends the version it read, and on a conflict reads again and retries once", function()
    assert.is_true(docker.update("cache", { Labels = { team = "db" } }))
    local conflicts, updates = d.records("conflict"), d.records("updated")
    assert.equal(1, #conflicts)
    assert.same({ conflict = 11, current = 12 }, conflicts[1])
    assert.equal(1, #updates)
    assert.equal(12, updates[1].version)
    assert.same({ team = "db" }, updates[1].spec.Labels)
    assert.equal("redis:7", updates[1].spec.TaskTemplate.ContainerSpec.Image)
    local reqs = {}
    for _, r in ipairs(d.records("method")) do reqs[#reqs + 1] = r.method .. " " .. r.path:gsub("/services/%x+/", "/services/ID/") end
    assert.same({ "GET /v1.41/services/cache", "POST /v1.41/services/ID/update?version=11",
      "GET /v1.41/services/cache", "POST /v1.41/services/ID/update?version=12" }, reqs)
  end)

  it("scale(name, delta) changes Mode.Replicated.Replicas", function()
    assert.is_true(docker.scale("cache", 1))
    assert.is_true(docker.scale("cache", 2))
    local spec = docker.service("cache")
    assert.equal(5, spec.Mode.Replicated.Replicas)
    local ok, err = docker.scale("nope", 1)
    assert.is_nil(ok)
    assert.matches("service nope not found", err, 1, true)
  end)

  it("run creates (pulling the image when missing) and starts; errors carry Docker's message", function()
    local id = assert(docker.run({ image = "redis:7", name = "r1", cmd = { "redis-server", "--appendonly", "no" },
      env = { "A=1" }, network = "redis-net" }))
    assert.matches("^%x+$", id)
    local paths = {}
    for _, r in ipairs(d.records("method")) do paths[#paths + 1] = r.method .. " " .. r.path end
    assert.same({ "POST /v1.41/containers/create?name=r1", "POST /v1.41/images/create?fromImage=redis&tag=7",
      "POST /v1.41/containers/create?name=r1", "POST /v1.41/containers/" .. id .. "/start" }, paths)
    local create = json.decode(d.records("method")[3].body)
    assert.same({ Image = "redis:7", Cmd = { "redis-server", "--appendonly", "no" }, Env = { "A=1" },
      HostConfig = { NetworkMode = "redis-net" } }, create)
    local started = d.records("started")
    assert.equal(1, #started)
    procs.wait(function() return procs.cli(started[1].port, "ping") == "PONG" end, 20, "the container's redis-server")
    local none, err = docker.run({ image = "redis:7", name = "r1" })
    assert.is_nil(none)
    assert.equal('docker: POST /containers/create?name=r1: Conflict. The container name "/r1" is already in use', err)
  end)

  it("a daemon that is not there is nil, err", function()
    local ok, err = docker.service("cache", { socket = d.dir .. "/none.sock" })
    assert.is_nil(ok)
    assert.matches("^docker: http GET", err)
  end)
end)

describe("swarm-replace-replica.lua with real Sentinels", function()
  it("starts one replacement replica the Sentinels see, then the hourly cap holds", function()
    local dir = procs.tmpdir()
    local rules, logf, conf = dir .. "/rules", dir .. "/eventilator.log", dir .. "/eventilator.conf"
    procs.shipped_rules(rules, "swarm-replace-replica.lua")
    local d = dockerd()
    local ok, c = pcall(constellation.start, { conf = conf, down_after = 3000, setup = function(c)
      procs.write(conf, table.concat({
        string.format("log = { target = %q, level = \"debug\" }", logf),
        string.format("rules_dir = %q\nstate_dir = %q", rules, dir .. "/state"),
        string.format("redis = { port = %d, timeout = 1 }", c.store.port),
        string.format("docker = { socket = %q }", d.socket),
        "swarm = { image = \"redis:7\", max_per_hour = 1 }",
      }, "\n") .. "\n")
    end })
    finally(function()
      if ok then c:stop() end
      d.stop()
      procs.rmtree(dir)
    end)
    assert(ok, c)
    local run_ok, err = pcall(function()
      local master = c.master_port
      c:kill_node(c:replica_port())
      procs.wait(function() return #d.records("started") > 0 end, 60, "a replacement container")
      local started = d.records("started")[1]
      started.port = math.tointeger(started.port) -- cjson decodes numbers as floats
      assert.same({ "redis-server", "--replicaof", "127.0.0.1", tostring(master) }, started.cmd)
      -- the Sentinels find the new replica through the master
      procs.wait(function()
        for i = 1, 3 do
          if not c:sentinel_cli(i, "sentinel", "replicas", constellation.NAME):find("127.0.0.1:" .. started.port, 1, true) then
            return false
          end
        end
        return true
      end, 60, "every Sentinel to list the new replica")
      c:settle(120)
      -- the second replica down in the same hour: no second replacement
      c:kill_node(c:replica_port())
      procs.wait(function() return (procs.read(logf) or ""):find("replacements this hour", 1, true) ~= nil end,
        60, "the cap to be reported")
      c:settle(120)
      assert.equal(1, #d.records("started"))
      assert.equal("", problems(d))
    end)
    if not run_ok then
      io.stderr:write("\n[docker] eventilator log:\n" .. (procs.read(logf) or ""):sub(-5000) ..
        "\n[docker] SENTINEL REPLICAS on sentinel 1:\n" .. c:sentinel_cli(1, "sentinel", "replicas", constellation.NAME) ..
        "\n[docker] master replication:\n" .. procs.cli(c.master_port, "info", "replication") .. "\n")
      error(err, 0)
    end
  end)
end)
