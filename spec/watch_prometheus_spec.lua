-- A real Prometheus (Debian's `prometheus`, on loopback) scrapes a watcher
-- (watch.listen, docs/watch.md "Metrics and health") every second through
-- a real failover on a Sentinel constellation; its query API then returns
-- the heard and run counters of +switch-master and eventilator_sentinel_up
-- for each Sentinel, and the target is up with no scrape error.
local procs = require("procs")
local constellation = require("constellation")
local watcher = require("watcher")
local scrape = require("scrape")
local json = require("cjson")

local is = watcher.is

-- A private Prometheus scraping `target` (host:port) every second, on a port of its own; returns { url, pid, dir,
-- stop }. Ours answers /api/v1/status/flags with our storage path: another Prometheus on the port does not.
local function prometheus(target)
  local dir = procs.tmpdir()
  local data = dir .. "/data"
  procs.write(dir .. "/prometheus.yml", string.format([[
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: eventilator
    static_configs:
      - targets: ["%s"]
]], target))
  local p = { dir = dir }
  p.port, p.pid = procs.serve{
    what = "prometheus", timeout = 60,
    start = function(port)
      return procs.spawn(string.format("prometheus --config.file=%s --storage.tsdb.path=%s " ..
        "--web.listen-address=127.0.0.1:%d --log.level=warn", procs.quote(dir .. "/prometheus.yml"),
        procs.quote(data), port), dir .. "/prometheus.log")
    end,
    up = function(port)
      local code, body = scrape.get(string.format("http://127.0.0.1:%d/api/v1/status/flags", port), 2)
      return code == 200 and body:find(data, 1, true) ~= nil
        and scrape.get(string.format("http://127.0.0.1:%d/-/ready", port), 2) == 200
    end,
    log = function() return procs.read(dir .. "/prometheus.log") end,
  }
  p.url = "http://127.0.0.1:" .. p.port
  p.stop = procs.stopper(p, 5)
  return p
end

-- GET /api/v1/<path> with the query `q` (form-encoded by curl): the decoded `data`, or nil.
local function api(p, path, q)
  local args = q and ("-G --data-urlencode " .. procs.quote("query=" .. q)) or ""
  local out = procs.sh(string.format("env -u LD_PRELOAD curl -s --max-time 5 %s %s", args, procs.quote(p.url .. "/api/v1/" .. path)))
  local ok, doc = pcall(json.decode, out)
  if ok and type(doc) == "table" and doc.status == "success" then return doc.data end
end

-- The instant vector of `q` as { {labels, value} }, or {}.
local function query(p, q)
  local data = api(p, "query", q)
  local out = {}
  for _, r in ipairs(data and data.result or {}) do
    out[#out + 1] = { labels = r.metric, value = tonumber(r.value[2]) }
  end
  return out
end

describe("Prometheus scraping a watcher through a real failover", function()
  local c, w, prom

  setup(function()
    w = watcher.new()
    c = constellation.start{ scripts = false, conf = w.conf }
    w:config(string.format('watch = { sentinels = { %q }, listen = "127.0.0.1:0", dedupe_window = 20 }',
      c:sentinel_addr(1)))
    w:record("10-record.lua", { "+switch-master" })
    w:start()
    w:wait_log("connected and subscribed", 3, 30)
    local url = scrape.wait_url(w)
    prom = prometheus(url:match("^http://(.*)$"))
  end)

  teardown(function()
    if prom then prom.stop() end
    if w then
      w:finish(60)
    end
    if c then c:stop() end
  end)

  it("has the heard and run counters of +switch-master and every Sentinel's up", function()
    -- scraped before the failover: the counters' rise is what Prometheus sees
    procs.wait(function() return #query(prom, 'up{job="eventilator"} == 1') == 1 end, 60, "a first scrape")
    local old = c:kill_master()
    local new = c:wait_failover(60)
    watcher.note("failover %d -> %d", old, new)
    w:wait_handled(is("+switch-master"), 1, 30, "+switch-master")
    local heard, runs
    procs.wait(function()
      heard = query(prom, 'eventilator_events_heard_total{event="+switch-master"}')
      runs = query(prom, 'eventilator_runs_total{event="+switch-master",outcome="ok"}')
      return #heard == 1 and #runs == 1 and heard[1].value > 0 and runs[1].value > 0
    end, 60, "the +switch-master counters in Prometheus")
    -- as many as the Sentinels raised, at least one: a loaded machine may fail over twice
    local raised = #c:raised("+switch-master")
    assert.is_true(heard[1].value >= 1 and heard[1].value <= raised, tostring(heard[1].value))
    assert.is_true(runs[1].value >= 1 and runs[1].value <= w:count(is("+switch-master")), tostring(runs[1].value))
    assert.are.equal("eventilator", runs[1].labels.job)
    local up
    procs.wait(function()
      up = query(prom, "eventilator_sentinel_up")
      return #up == #c.sentinels
    end, 30, "a sentinel_up series per Sentinel")
    local want = {}
    for i = 1, #c.sentinels do want[c:sentinel_addr(i)] = true end
    for _, s in ipairs(up) do
      assert.is_true(want[s.labels.sentinel], s.labels.sentinel)
      assert.are.equal(1, s.value, s.labels.sentinel)
      want[s.labels.sentinel] = nil
    end
    assert.is_nil(next(want))
    -- the histogram reached it whole: its count is the runs'
    local n = query(prom, 'eventilator_handler_seconds_count{event="+switch-master"}')
    assert.are.equal(1, #n)
    -- and every scrape parsed
    local targets = api(prom, "targets")
    assert.are.equal(1, #targets.activeTargets)
    assert.are.equal("up", targets.activeTargets[1].health)
    assert.are.equal("", targets.activeTargets[1].lastError)
  end)
end)
