-- `eventilator sentinels status` against a hostile fake Sentinel
-- (spec/support/fakesentinel.py) beside a real redis-sentinel: a field of the
-- wrong type, hundreds of silent Sentinels named, a reply that announces
-- 2 000 000 000 elements. Each ends in a report, on time (issue 18).
local procs = require("procs")
local runner = require("runner")
local hostile = require("hostile")
local json = require("cjson")

local note = require("watcher").note

local function has(text, needle)
  return text:find(needle, 1, true) ~= nil
end

describe("eventilator sentinels status, with a hostile fake Sentinel", function()
  local ctx, real
  local fakes = {}

  setup(function()
    ctx = runner.new()
    real = hostile.sentinel()
  end)
  teardown(function()
    if real then real.stop() end
    if ctx then ctx:cleanup() end
  end)
  after_each(function()
    for _, f in ipairs(fakes) do f.stop() end
    fakes = {}
  end)
  local function fake(args)
    fakes[#fakes + 1] = hostile.fake(args)
    return fakes[#fakes]
  end

  -- status with these seeds (under `timeout 60`): exit code, stdout, stderr, seconds
  local function status(seeds, ...)
    local args = { "sentinels", "status" }
    for _, s in ipairs(seeds) do
      args[#args + 1] = "--sentinel"
      args[#args + 1] = s
    end
    for _, a in ipairs({ ... }) do args[#args + 1] = a end
    for i, a in ipairs(args) do args[i] = procs.quote(a) end
    local t0 = hostile.now()
    local out, rc = procs.sh(string.format("env EVENTILATOR_CONF=%s timeout 60 %s %s 2>%s", procs.quote(ctx.conf),
      procs.quote(procs.build .. "/bin/eventilator"), table.concat(args, " "), procs.quote(ctx.dir .. "/stderr")))
    return rc, out, procs.read(ctx.dir .. "/stderr") or "", hostile.now() - t0
  end

  it("names a field of the wrong type as a problem, and still reports the rest", function()
    local f = fake{ "--master", "pod1:127.0.0.1:6379", "--field", "notification-script=int",
      "--field", "client-reconfig-script=array" }
    local rc, out, err = status({ f.addr, real.addr }, "--master", "pod1", "--timeout", "2")
    assert.are.equal(1, rc, out .. err)
    assert.is_false(has(err, "internal error"), err)
    assert.truthy(has(out, f.addr .. ", master pod1: notification-script is a number, not a string"), out)
    assert.truthy(has(out, f.addr .. ", master pod1: client-reconfig-script is a list, not a string"), out)
    assert.truthy(out:find(real.addr:gsub("%p", "%%%0") .. "%s+pod1%s+127%.0%.0%.1:%d+%s+master"), out)
    local _, jout = status({ f.addr, real.addr }, "--master", "pod1", "--json", "--timeout", "2")
    local found = false
    for _, p in ipairs(json.decode(jout).problems) do
      if has(p, "notification-script is a number") then found = true end
    end
    assert.is_true(found, jout)
  end)

  it("caps discovery and contacts silent Sentinels in parallel: 400 of them cost about one timeout", function()
    local f = fake{ "--master", "pod1:127.0.0.1:6379", "--name", "400", "--silent", "400" }
    local rc, out, err, secs = status({ f.addr, real.addr }, "--timeout", "1")
    note("status with 400 silent Sentinels named, --timeout 1: %.2f s", secs)
    assert.are.equal(1, rc, out .. err)
    assert.is_true(secs < 6, "took " .. secs .. " s")
    local rows = 0
    for _ in out:gmatch("\n127%.0%.0%.1:%d+%s+%-%s+unreachable: timed out") do rows = rows + 1 end
    assert.is_true(rows > 0 and rows <= 64, rows .. " rows")
    assert.truthy(has(out, "more than 64 Sentinels"), out)
    assert.truthy(out:find(real.addr:gsub("%p", "%%%0") .. "%s+pod1%s"), out)
  end)

  it("ends within its timeout when a reply announces 2 000 000 000 elements or 4 GB", function()
    local arr = fake{ "--master", "pod1:127.0.0.1:6379", "--huge", "SENTINEL MASTERS=array", "--huge-pause", "0.05",
      "--huge-send", tostring(8 << 20) }
    local rc, out, err, secs = status({ arr.addr, real.addr }, "--timeout", "2")
    note("status, *2000000000 from SENTINEL MASTERS: %.2f s", secs)
    assert.are.equal(1, rc, out .. err)
    assert.is_true(secs < 3, "took " .. secs .. " s")
    assert.truthy(has(out, arr.addr .. ": unreachable: reply larger than"), out)
    local bulk = fake{ "--master", "pod1:127.0.0.1:6379", "--huge", "INFO=bulk", "--huge-pause", "0.05" }
    rc, out, err, secs = status({ bulk.addr, real.addr }, "--timeout", "2")
    note("status, $4000000000 from INFO: %.2f s", secs)
    assert.are.equal(1, rc, out .. err)
    assert.is_true(secs < 3, "took " .. secs .. " s")
    assert.truthy(has(out, bulk.addr .. ": unreachable: reply larger than"), out)
  end)
end)
