-- eventilator.stream and rules/53-stream.lua on a real redis-server.
local procs = require("procs")
local runner = require("runner")
local rulefile = require("rulefile")
local defaults = require("defaults")
local json = require("cjson")

local CFG = require("hostless")
local stream = require("eventilator.stream")

local function ev(i)
  return { name = "+sdown", mode = "eventilator", pod = "pod1", host = "s1.example.net", time = 1772352307.25 + (i or 0),
    text = "slave 10.0.0.7:6380 10.0.0.7 6380 @ pod1 10.0.0.5 6379",
    args = { "+sdown", "slave 10.0.0.7:6380 10.0.0.7 6380 @ pod1 10.0.0.5 6379" },
    instance = { type = "slave", name = "10.0.0.7:6380", ip = "10.0.0.7", port = 6380 },
    master = { name = "pod1", ip = "10.0.0.5", port = 6379 } }
end

-- redis-cli's non-tty output, one element a line
local function lines(s)
  local t = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

describe("stream", function()
  local redis, other
  local function cli(...) return procs.cli(redis.port, ...) end

  setup(function()
    redis = procs.start_redis()
    other = procs.start_redis()
  end)
  teardown(function()
    redis.stop()
    other.stop()
  end)

  before_each(function()
    cli("FLUSHALL")
    procs.cli(other.port, "FLUSHALL")
    CFG.redis = defaults().redis
    CFG.redis.port = redis.port
    CFG.stream = defaults().stream
  end)

  it("does nothing until stream.enabled", function()
    local cfg = defaults()
    assert.same({}, (rulefile("53-stream.lua", cfg)))
    cfg.stream.enabled = true
    assert.equal(1, #rulefile("53-stream.lua", cfg))
  end)

  it("XREADGROUP sees every field", function()
    assert.equal("OK", cli("XGROUP", "CREATE", "eventilator:events", "ops", "$", "MKSTREAM"))
    assert.is_true(stream.add(ev()))
    local out = lines(cli("XREADGROUP", "GROUP", "ops", "c1", "COUNT", "10", "STREAMS", "eventilator:events", ">"))
    -- key, id, then field/value pairs
    assert.equal("eventilator:events", out[1])
    assert.matches("^%d+%-%d+$", out[2])
    local f = {}
    for i = 3, #out - 1, 2 do f[out[i]] = out[i + 1] end
    assert.equal("+sdown", f.name)
    assert.equal("pod1", f.pod)
    assert.equal("slave 10.0.0.7:6380 10.0.0.7 6380 @ pod1 10.0.0.5 6379", f.text)
    assert.equal("s1.example.net", f.host)
    assert.equal("1772352307.250", f.time)
    local j = json.decode(f.json)
    assert.equal("+sdown", j.name)
    assert.equal(6380, j.instance.port)
    assert.equal("s1.example.net", j.host)
  end)

  it("applies MAXLEN (approximately, as ~ allows) and the configured key", function()
    CFG.stream.key = "ops:events"
    CFG.stream.maxlen = 10
    for i = 1, 300 do assert.is_true(stream.add(ev(i))) end
    local n = tonumber(cli("XLEN", "ops:events"))
    assert.is_true(n >= 10 and n < 300, "XLEN " .. tostring(n))
    assert.equal("0", cli("EXISTS", "eventilator:events"))
  end)

  it("goes to stream.redis when set, with nothing of config.redis but the timeout", function()
    CFG.redis.password = "not for the other server"
    CFG.stream.redis = { host = "127.0.0.1", port = other.port }
    assert.is_true(stream.add(ev()))
    assert.equal("1", procs.cli(other.port, "XLEN", "eventilator:events"))
    assert.equal("0", cli("XLEN", "eventilator:events"))
  end)

  it("a down store fails: nil, err; exit 1 through the binary", function()
    CFG.redis.port = procs.closed_port()
    local ok, err = stream.add(ev())
    assert.is_nil(ok)
    assert.matches("^stream: ", err)
    local ctx = runner.new()
    os.execute(string.format("cp %s/rules/53-stream.lua %s/", procs.quote(procs.src), procs.quote(ctx.rules)))
    ctx:config(string.format("redis = { port = %d, timeout = 1 }\nstream = { enabled = true }", procs.closed_port()))
    local rc, log = ctx:run("eventilator", "+sdown", ev().text)
    assert.equal(1, rc, log)
    ctx:cleanup()
  end)

  it("through the binary: each event once, whichever Sentinel calls first", function()
    local ctx = runner.new()
    os.execute(string.format("cp %s/rules/53-stream.lua %s/", procs.quote(procs.src), procs.quote(ctx.rules)))
    ctx:config(string.format("redis = { port = %d, timeout = 1 }\nstream = { enabled = true }", redis.port))
    for _ = 1, 3 do
      local rc, log = ctx:run("eventilator", "+sdown", ev().text)
      assert.equal(0, rc, log)
    end
    assert.equal("1", cli("XLEN", "eventilator:events"))
    ctx:cleanup()
  end)
end)
