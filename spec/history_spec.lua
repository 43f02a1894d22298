-- eventilator history (contract section 15, docs/history.md): the grouping
-- rule on calls made up for each case (eventilator.failovers), then the
-- built binary on record files written here (spec/support/recording.lua,
-- shaped like the shared corpus) and on the corpus itself, and the --html
-- page as Debian's Chromium renders it. A real recorded failover is in
-- loop_failover_spec.lua.
local procs = require("procs")
local runner = require("runner")
local recording = require("recording")
local chromium = require("chromium")
local json = require("cjson")
local failovers = require("eventilator.failovers")

local CORPUS = procs.shared .. "/sentinel/corpus-failover.jsonl"
local T0 = 1795600000

-- Calls for the grouper: { dt, sentinel, name, text-ish fields } -> grouped.
local function group(calls)
  local closed = {}
  local g = failovers.new(function(f) closed[#closed + 1] = f end)
  for _, c in ipairs(calls) do
    c.time = c.time or (c.dt and T0 + c.dt)
    g:add(c)
  end
  local outside = g:finish()
  table.sort(closed, function(a, b) return a.n < b.n end)
  return closed, outside
end

local function names(f)
  local t = {}
  for i, c in ipairs(f.calls) do t[i] = c.name end
  return t
end

local function master(dt, s, name, extra)
  local c = { dt = dt, sentinel = s, name = name, pod = "pod1", instance = "master", master = "10.0.0.1:6379" }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

describe("failovers.lua: the grouping rule", function()
  it("opens at +sdown master, lets -odown pass while the leader fails over, ends at +failover-end, keeps the tail", function()
    local fs, outside = group({
      { dt = -100, sentinel = "s1", name = "+monitor", pod = "pod1", instance = "master" },
      master(0, "s1", "+sdown"), master(0.1, "s2", "+sdown"), master(0.2, "s1", "+odown"),
      { dt = 0.3, sentinel = "s1", name = "+new-epoch" }, master(0.4, "s1", "+try-failover"),
      { dt = 0.45, sentinel = "s2", name = "+vote-for-leader" },
      master(0.5, "s1", "+elected-leader"), master(1.0, "s1", "+promoted-slave", { instance = "slave" }),
      master(1.1, "s2", "+switch-master", { instance = nil, from = "10.0.0.1:6379", to = "10.0.0.2:6379" }),
      master(1.2, "s2", "-odown"), master(2.0, "s1", "+failover-end"),
      master(2.01, "s1", "+switch-master", { instance = nil }),
      master(2.5, "s2", "+odown"), -- a slow Sentinel's, about the old master: joins
      master(31, "s2", "+sdown", { instance = "slave" }),
      master(40, "s1", "+sdown", { master = "10.0.0.2:6379" }), -- the new master down: a new failover
    })
    assert.equal(1, outside) -- +monitor
    assert.equal(2, #fs)
    local f = fs[1]
    assert.same({ "+sdown", "+sdown", "+odown", "+new-epoch", "+try-failover", "+vote-for-leader",
                  "+elected-leader", "+promoted-slave", "+switch-master", "-odown", "+failover-end",
                  "+switch-master", "+odown", "+sdown" }, names(f))
    assert.equal(T0 + 2.0, f.ended)
    assert.equal("+failover-end", f.ended_by)
    assert.equal("s1", f.leader)
    assert.same({ "s1", "s2" }, f.sentinels)
    assert.equal("10.0.0.2:6379", f.to)
    for _, p in ipairs({ "down", "elected", "promoted", "switched", "ended" }) do assert.is_table(f.phases[p], p) end
    assert.equal("+sdown", f.phases.down.name)
    assert.equal(T0 + 40, fs[2].start)
  end)

  it("ends at -odown when no failover is under way, at -sdown master when none agreed it was down", function()
    local fs = group({
      master(0, "s1", "+sdown"), master(0.5, "s1", "+odown"), master(3, "s1", "-odown"), master(3.1, "s1", "-sdown"),
      master(100, "s1", "+sdown"), master(101, "s1", "-sdown"),
      master(200, "s1", "+sdown"), master(200.5, "s1", "+odown"), master(201, "s1", "+try-failover"),
      master(211, "s1", "-failover-abort-not-elected"), master(212, "s1", "-odown"),
    })
    assert.equal(3, #fs)
    assert.same({ "-odown", "-sdown", "-odown" }, { fs[1].ended_by, fs[2].ended_by, fs[3].ended_by })
    assert.equal(4, #fs[1].calls) -- the -sdown after: in the tail
    assert.equal(1, fs[3].aborted)
  end)

  it("closes a failover quiet for IDLE seconds or past its TAIL, and leaves out calls no failover is open for", function()
    local fs, outside = group({
      master(0, "s1", "+sdown"), master(failovers.IDLE + 1, "s1", "+sdown"),
      master(failovers.IDLE + 2, "s1", "+failover-end"),
      master(failovers.IDLE + 2 + failovers.TAIL + 1, "s1", "+switch-master", { instance = nil }),
      { dt = 5000, sentinel = "s1", name = "+new-epoch" },
    })
    assert.equal(2, #fs)
    assert.is_nil(fs[1].ended)
    assert.equal(1, #fs[1].calls)
    assert.equal(2, #fs[2].calls)
    assert.equal(2, outside)
  end)

  it("gives a call with no master the failover its Sentinel last reported, or the only one open", function()
    local p2 = function(dt, s, name) local c = master(dt, s, name); c.pod = "pod2"; return c end
    local fs, outside = group({
      master(0, "s1", "+sdown"), p2(0.1, "s2", "+sdown"),
      { dt = 0.2, sentinel = "s2", name = "+new-epoch" },
      { dt = 0.3, sentinel = "s3", name = "+vote-for-leader" }, -- two open, s3 in neither: left out
      master(1, "s1", "+failover-end"),
      { dt = 1.1, sentinel = "s3", name = "+new-epoch" }, -- one open now: pod2's
    })
    assert.equal(1, outside)
    assert.same({ "+sdown", "+failover-end" }, names(fs[1]))
    assert.same({ "+sdown", "+new-epoch", "+new-epoch" }, names(fs[2]))
  end)

  it("colors a call by its handlers, and an old line by its exit", function()
    local s = failovers.status
    assert.equal("failed", s({ exit = 0, handlers = { { outcome = "ok" }, { outcome = "failed" } } }))
    assert.equal("failed", s({ exit = 2 }))
    assert.equal("retried", s({ exit = 0, retry = true, handlers = { { outcome = "skipped" }, { outcome = "ok" } } }))
    assert.equal("skipped", s({ exit = 0, handlers = { { outcome = "skipped" } } }))
    assert.equal("none", s({ exit = 0, handlers = {} }))
    assert.equal("ok", s({ exit = 0 }))
    assert.equal("ok", s({ exit = 0, handlers = { { outcome = "ok" }, { outcome = "skipped" } } }))
  end)
end)

describe("eventilator history", function()
  local ctx
  before_each(function() ctx = runner.new() end)
  after_each(function() ctx:cleanup() end)

  local function history(...)
    local rc, _, out = ctx:run("eventilator", "history", ...)
    return out, rc, ctx:stderr()
  end

  local function file(name, lines)
    local path = ctx.dir .. "/" .. name
    recording.write(path, lines)
    return path
  end

  local SS = { "pid:11", "pid:12", "pid:13" }

  it("reads the shared corpus (no times, no Sentinels): two failovers, the second a SENTINEL FAILOVER", function()
    local out, rc, err = history("--file", CORPUS, "--json")
    assert.equal(0, rc, err)
    local fs = json.decode(out)
    assert.equal(2, #fs)
    assert.equal("pod1", fs[1].pod)
    assert.equal("+failover-end", fs[1].ended_by)
    assert.same({ "127.0.0.1:17000", "127.0.0.1:17002" }, { fs[1].from, fs[1].to })
    assert.equal("+sdown", fs[1].events[1].name)
    assert.equal("+try-failover", fs[2].events[1].name)
    assert.equal(19, #fs[2].events)
    assert.same({ "127.0.0.1:17002", "127.0.0.1:17001" }, { fs[2].from, fs[2].to })
    assert.is_nil(fs[1].events[1].offset)
    out, rc = history("--file", CORPUS)
    assert.equal(0, rc)
    assert.matches("= 2 failovers; 4 calls outside any failover %(0 failed%)\n$", out)
  end)

  it("shows each call's offset, Sentinel, event and handlers, failures with their error, and retries", function()
    local path = file("calls.jsonl", recording.failover{ t0 = T0, sentinels = SS,
      fail = { ["client-reconfig leader"] = "connection refused" } })
    local out, rc, err = history("--file", path)
    assert.equal(0, rc, err)
    assert.matches("^pod1: %d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d, 2%.5 s; switched 10%.0%.0%.1:6379 %-> 10%.0%.0%.1:6380; " ..
      "leader pid:11\n  31 calls from 3 Sentinels %(pid:11, pid:12, pid:13%); 1 failed, 1 retry\n", out)
    assert.matches("\n    %+0%.00s  pid:11  %+sdown master pod1 10%.0%.0%.1 6379 +00%-log:2 ok 0%.2 ms, 20%-warnings:14 ok 1%.4 ms\n", out)
    assert.matches("\n    %+1%.21s  pid:11  client%-reconfig pod1 leader start 10%.0%.0%.1 6379 10%.0%.0%.1 6380 +00%-log:2 ok " ..
      "0%.2 ms, 10%-failover%-metrics:6 FAILED 5%.0 ms, exit 1: Sentinel retries\n +10%-failover%-metrics:6: connection refused\n", out)
    assert.matches("\n   %+31%.21s  pid:11  client%-reconfig pod1 leader start [^\n]* RETRY: 00%-log:2 skipped, " ..
      "10%-failover%-metrics:6 ok 2%.1 ms\n", out)
    assert.matches("%+vote%-for%-leader db8a66a6… 1", out) -- a run ID cut short
    assert.matches("\n= 1 failover\n$", out)
  end)

  it("--failed keeps the failovers with failed or retried work and exits 1; --json has every call", function()
    local lines = recording.failover{ t0 = T0, sentinels = SS }
    for _, l in ipairs(recording.failover{ t0 = T0 + 1000, sentinels = SS, epoch = 2,
                                          fail = { ["+odown"] = "store down" } }) do
      lines[#lines + 1] = l
    end
    local path = file("calls.jsonl", lines)
    local out, rc = history("--file", path, "--failed", "--json")
    assert.equal(1, rc)
    local fs = json.decode(out)
    assert.equal(1, #fs)
    assert.equal(T0 + 1000 + 0.01, fs[1].start)
    assert.equal(3, fs[1].failed)
    assert.equal(3, fs[1].retries)
    local failed = 0
    for _, e in ipairs(fs[1].events) do
      assert.is_number(e.offset)
      assert.is_string(e.sentinel)
      if e.status == "failed" then
        failed = failed + 1
        assert.equal("+odown", e.name)
        assert.equal(1, e.exit)
        assert.same({ rule = "/etc/redis/eventilator.d/20-warnings.lua:14", outcome = "failed", ms = 5,
                      error = "store down" }, e.handlers[2])
      end
    end
    assert.equal(3, failed)
    for _, p in ipairs({ "down", "elected", "promoted", "switched", "ended" }) do
      assert.is_number(fs[1].phases[p], p) -- its offset
    end
    out, rc = history("--file", path, "--failed")
    assert.equal(1, rc)
    assert.matches("= 1 failover shown of 2\n$", out)
    out, rc = history("--file", file("ok.jsonl", recording.failover{ t0 = T0, sentinels = SS }), "--failed")
    assert.equal(0, rc)
    assert.equal("= 0 failovers shown of 1\n", out)
  end)

  it("merges several hosts' files by time, a pid labelled by its host, an ip:port as it is", function()
    local a = recording.failover{ t0 = T0, sentinels = { "pid:11", "pid:12" } }
    local b = recording.failover{ t0 = T0 + 0.005, sentinels = { "pid:11", "10.0.0.9:26379" }, leader = 2 }
    local pa, pb = file("a.jsonl", a), file("hostB.jsonl", b)
    local out, rc, err = history("--file", "hostA=" .. pa, "--file", pb, "--json")
    assert.equal(0, rc, err)
    local fs = json.decode(out)
    assert.equal(1, #fs)
    assert.same({ "hostA pid:11", "hostB pid:11", "hostA pid:12", "10.0.0.9:26379" }, fs[1].sentinels)
    assert.equal(#a + #b, #fs[1].events)
    for i = 2, #fs[1].events do assert.is_true(fs[1].events[i].time >= fs[1].events[i - 1].time) end
    assert.equal("hostA pid:11", fs[1].leader) -- the first +elected-leader by time
    -- one file: no host in the labels
    out = history("--file", pa, "--json")
    assert.same({ "pid:11", "pid:12" }, json.decode(out)[1].sentinels)
  end)

  it("reads <state_dir>/calls.jsonl.1 then calls.jsonl by default, so a failover cut by the rotation is whole", function()
    local lines = recording.failover{ t0 = T0, sentinels = SS }
    local first, second = {}, {}
    for i, l in ipairs(lines) do table.insert(i <= 10 and first or second, l) end
    os.execute("mkdir -p " .. procs.quote(ctx.dir .. "/state"))
    file("state/calls.jsonl.1", first)
    file("state/calls.jsonl", second)
    local out, rc, err = history("--json")
    assert.equal(0, rc, err)
    local fs = json.decode(out)
    assert.equal(1, #fs)
    assert.equal(#lines, #fs[1].events)
    assert.same({ "pid:11", "pid:12", "pid:13" }, fs[1].sentinels)
    ctx:config(string.format("record = %q", ctx.dir .. "/elsewhere.jsonl"))
    out, rc, err = history()
    assert.equal(0, rc)
    assert.equal("", out)
    assert.matches("no calls recorded yet %(.*/elsewhere%.jsonl does not exist%)", err)
    -- one that cannot be read (as state_dir is to anyone but Sentinel's user) is not "nothing
    -- recorded": the error, exit 2 (a file in the way of the folder: ENOTDIR, as root too)
    procs.write(ctx.dir .. "/plain", "")
    ctx:config(string.format("record = %q", ctx.dir .. "/plain/calls.jsonl"))
    out, rc, err = history()
    assert.equal(2, rc)
    assert.equal("", out)
    assert.matches("plain/calls%.jsonl%.1: Not a directory", err)
    ctx:config("record = false")
    out, rc, err = history()
    assert.equal(2, rc)
    assert.equal("", out)
    assert.matches("record = false", err)
  end)

  it("--pod and --since narrow it; a bad option or duration is refused", function()
    local now = os.time()
    local lines = recording.failover{ t0 = now - 3 * 3600, sentinels = SS }
    for _, l in ipairs(recording.failover{ t0 = now - 600, sentinels = SS, pod = "pod2" }) do lines[#lines + 1] = l end
    local path = file("calls.jsonl", lines)
    local function pods(...)
      local out, rc = history("--file", path, "--json", ...)
      assert.equal(0, rc)
      local t = {}
      for i, f in ipairs(json.decode(out)) do t[i] = f.pod end
      return t
    end
    assert.same({ "pod1", "pod2" }, pods())
    assert.same({ "pod2" }, pods("--since", "2h"))
    assert.same({ "pod1", "pod2" }, pods("--since", "1d"))
    assert.same({ "pod1" }, pods("--pod", "pod1"))
    assert.same({}, pods("--pod", "pod1", "--since", "30m"))
    local _, rc, err = history("--file", path, "--since", "2")
    assert.equal(2, rc)
    assert.matches("%-%-since: \"2\" is not a duration", err)
    _, rc, err = history("--file", path, "--bogus")
    assert.equal(2, rc)
    assert.matches("unknown option \"%-%-bogus\"\nusage: eventilator history", err)
  end)

  it("exits 2 on a file it cannot read; a bad line is named and skipped", function()
    local _, rc, err = history("--file", ctx.dir .. "/missing.jsonl")
    assert.equal(2, rc)
    assert.matches("missing%.jsonl: No such file", err)
    local path = file("calls.jsonl", recording.failover{ t0 = T0, sentinels = SS })
    procs.write(path, "not json\n" .. procs.read(path))
    local out
    out, rc, err = history("--file", path)
    assert.equal(0, rc)
    assert.matches("calls%.jsonl:1: not valid JSON", err)
    assert.matches("= 1 failover; 1 bad line skipped\n$", out)
  end)

  it("shows an old line (no handlers) as such, and counts its exit", function()
    local path = ctx.dir .. "/old.jsonl"
    procs.write(path, table.concat({
      '{"argv0":"eventilator","args":["+sdown","master pod1 10.0.0.1 6379"],"time":1795600000.1,"sentinel":"pid:9","exit":0}',
      '{"argv0":"eventilator","args":["+odown","master pod1 10.0.0.1 6379 #quorum 2/2"],"time":1795600000.2,' ..
        '"sentinel":"pid:9","exit":1}',
    }, "\n") .. "\n")
    local out, rc = history("--file", path)
    assert.equal(0, rc)
    assert.matches("+sdown master pod1 10%.0%.0%.1 6379 +handlers not recorded\n", out)
    assert.matches("handlers not recorded, exit 1: Sentinel retries\n", out)
    assert.matches("1 failed, 0 retries", out)
  end)
end)

describe("eventilator history --html, in Chromium", function()
  local ctx
  before_each(function() ctx = runner.new() end)
  after_each(function() ctx:cleanup() end)

  it("draws a lane per Sentinel and a mark per call, escapes every recorded string, and is not blank", function()
    assert(chromium.available(), "chromium is not installed (scripts/deps.sh installs it)")
    local evil = "<script>document.title='pwned'</script>"
    local lines = recording.failover{ t0 = T0, sentinels = { "pid:11", "pid:12", "<img src=x onerror=alert(1)>" },
      pod = evil, fail = { ["client-reconfig leader"] = '"><script>alert(2)</script>' } }
    for _, l in ipairs(recording.failover{ t0 = T0 + 1000, sentinels = { "pid:11", "pid:12" }, back = true }) do
      lines[#lines + 1] = l
    end
    recording.write(ctx.dir .. "/calls.jsonl", lines)
    local page = ctx.dir .. "/history.html"
    local rc = ctx:run("eventilator", "history", "--file", ctx.dir .. "/calls.jsonl", "--html", page)
    assert.equal(0, rc, ctx:stderr())
    local html = procs.read(page)
    assert.not_matches("https?:", html) -- nothing to fetch
    assert.matches("Content%-Security%-Policy\" content=\"default%-src 'none'", html)

    local dom = chromium.dom(page)
    assert.equal(0, chromium.count(dom, "<script"), "no script element, the hostile ones included")
    assert.equal(0, chromium.count(dom, "<img"))
    assert.matches("<title>eventilator history</title>", dom) -- no script ran to change it
    assert.equal(2, chromium.count(dom, '<section class="failover"'))
    assert.equal(3 + 2, chromium.count(dom, '<div class="lane"'))
    assert.equal(#lines, chromium.count(dom, '<div class="mark '))
    assert.equal(1, chromium.count(dom, '<div class="mark failed"'))
    assert.equal(1, chromium.count(dom, '<div class="mark retried"'))
    -- the failover, and the master that came back (down and ended only)
    for p, n in pairs({ down = 2, elected = 1, promoted = 1, switched = 1, ended = 2 }) do
      assert.equal(n, chromium.count(dom, 'data-phase="' .. p .. '"'), p)
    end
    assert.matches("&lt;script&gt;document%.title='pwned'&lt;/script&gt;: switched", dom) -- shown as text
    assert.matches('title="[^"]*failed 5%.0 ms: &quot;&gt;&lt;script&gt;alert%(2%)', html) -- the error, on hover

    local colors, w, h, pixels = chromium.colors(chromium.screenshot(page, ctx.dir .. "/shot.png"),
      { "2e9d4f", "d93025", "f29900" })
    assert.same({ 1200, 800 }, { w, h })
    assert.is_true(colors > 10, "a blank page has one color, this one " .. colors)
    assert.is_true(pixels["2e9d4f"] > 0 and pixels["d93025"] > 0 and pixels["f29900"] > 0,
      "ok, failed and retried marks drawn")
  end)
end)
