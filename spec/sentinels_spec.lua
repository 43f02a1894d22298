-- eventilator sentinels status | register | unregister | doctor, against a
-- real fleet on loopback: 2 masters (pod1 with two replicas, pod2 alone) and
-- 3 redis-sentinel processes, the first two started with
-- `sentinel deny-scripts-reconfig no`, the third with the default (yes).
local procs = require("procs")
local runner = require("runner")
local constellation = require("constellation")
local json = require("cjson")

local function lines_of(text)
  local t = {}
  for l in (text or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function has(text, needle)
  return text:find(needle, 1, true) ~= nil
end

local BIN = (procs.sh("realpath " .. procs.quote(procs.build .. "/bin")):gsub("%s+$", ""))
local NOTIFY, RECONF = BIN .. "/eventilator", BIN .. "/reconfigurator"

-- A listener that accepts connections and never answers (a hung Sentinel),
-- on a port the kernel picks.
local function silent_listener()
  local dir = procs.tmpdir()
  procs.write(dir .. "/silent.py", table.concat({
    "import os, socket, sys",
    "s = socket.socket()",
    "s.bind(('127.0.0.1', 0))",
    "s.listen(16)",
    "open(sys.argv[1] + '.tmp', 'w').write(str(s.getsockname()[1]))",
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])",
    "held = []",
    "while True:",
    "    held.append(s.accept()[0])",
  }, "\n") .. "\n")
  local h = { dir = dir }
  h.pid = procs.spawn("python3 " .. procs.quote(dir .. "/silent.py") .. " " .. procs.quote(dir .. "/ready"), dir .. "/log")
  h.port = procs.ready_port(h.pid, dir .. "/ready", "silent listener", dir .. "/log")
  h.stop = procs.stopper(h)
  return h
end

describe("eventilator sentinels on a real fleet", function()
  local c, ctx

  local function run(...)
    local rc, _, out = ctx:run("eventilator", "sentinels", ...)
    return rc, out, procs.read(ctx.dir .. "/stderr") or ""
  end
  local function seed(i) return "127.0.0.1:" .. c.sentinels[i].port end
  local function sentinel_addr(i) return "127.0.0.1:" .. c.sentinels[i].port end

  lazy_setup(function()
    ctx = runner.new()
    c = constellation.start{
      conf = ctx.conf, masters = 2, scripts = false,
      sentinel_conf = function(i) return i <= 2 and { "sentinel deny-scripts-reconfig no" } or nil end,
      setup = function(k)
        ctx:config(string.format("redis = { port = %d }\n", k.store.port))
        ctx:rule("10-fail.lua", [[
          local f = io.open(config.state_dir .. "/../fail", "r")
          on("+sdown", function() if f then f:close(); error("told to fail") end end)
          -- while the hold file is there, a +set handler stays running (a first attempt in progress)
          on("+set", function()
            local t = os.time()
            repeat
              local h = io.open(config.state_dir .. "/../hold", "r")
              if not h then return end
              h:close()
              os.execute("sleep 0.1")
            until os.time() - t > 20
          end)
        ]])
      end,
    }
  end)

  lazy_teardown(function()
    if c then c:stop() end
    if ctx then ctx:cleanup() end
  end)

  it("register sets both scripts where Sentinel allows it and prints sentinel.conf lines where not", function()
    local rc, out = run("register", "--sentinel", seed(1), "--timeout", "2")
    assert.equals(1, rc, out)
    for i = 1, 2 do
      for _, m in ipairs({ "pod1", "pod2" }) do
        assert.truthy(has(out, sentinel_addr(i) .. "  " .. m .. "  set (read back)"), out)
        local f = constellation.fields(c:sentinel_cli(i, "sentinel", "master", m))
        assert.equals(NOTIFY, f["notification-script"])
        assert.equals(RECONF, f["client-reconfig-script"])
      end
    end
    assert.truthy(has(out, sentinel_addr(3) .. "  REFUSED: deny-scripts-reconfig"), out)
    local conf = {}
    for _, l in ipairs(lines_of(out)) do
      if l:match("^sentinel ") then conf[#conf + 1] = l end
    end
    assert.same({
      "sentinel notification-script pod1 " .. NOTIFY, "sentinel client-reconfig-script pod1 " .. RECONF,
      "sentinel notification-script pod2 " .. NOTIFY, "sentinel client-reconfig-script pod2 " .. RECONF,
    }, conf)
    local f = constellation.fields(c:sentinel_cli(3, "sentinel", "master", "pod1"))
    assert.is_nil(f["notification-script"])

    -- status: the third is missing the scripts
    rc, out = run("status", "--sentinel", seed(2))
    assert.equals(1, rc, out)
    assert.truthy(has(out, sentinel_addr(3) .. ", master pod1: no notification-script"), out)
    assert.truthy(has(out, sentinel_addr(3) .. ", master pod2: no client-reconfig-script"), out)
    assert.falsy(has(out, sentinel_addr(1) .. ", master"), out)

    -- the printed lines, added to its config, and a restart: all consistent
    c:stop_sentinel(3)
    c:start_sentinel(3, conf)
    c:wait_sentinel(3)
    c:wait_ready(30)
    c:settle(60)
    rc, out = run("status", "--sentinel", seed(3))
    assert.equals(0, rc, out)
    assert.truthy(has(out, "all 3 Sentinel(s) consistent"), out)

    rc, out = run("status", "--sentinel", seed(1), "--json")
    assert.equals(0, rc, out)
    local doc = json.decode(out)
    assert.is_true(doc.ok)
    assert.same({}, doc.problems)
    assert.equals(3, #doc.sentinels)
    table.sort(doc.masters)
    assert.same({ "pod1", "pod2" }, doc.masters)
    for _, s in ipairs(doc.sentinels) do
      assert.is_true(s.reachable)
      assert.equals(2, #s.masters)
      for _, m in ipairs(s.masters) do
        assert.equals(NOTIFY, m.notification_script)
        assert.equals(RECONF, m.client_reconfig_script)
        assert.same({ "master" }, m.flags)
        assert.equals(2, m.quorum)
      end
    end
  end)

  it("lists a Sentinel named by hostname once, and flags script paths that differ", function()
    local rc, out = run("status", "--sentinel", "localhost:" .. c.sentinels[1].port, "--json")
    assert.equals(0, rc, out)
    assert.equals(3, #json.decode(out).sentinels, out)
    assert.equals("OK", c:sentinel_cli(1, "sentinel", "set", "pod2", "notification-script", "/bin/true"))
    rc, out = run("status", "--sentinel", seed(1))
    assert.equals("OK", c:sentinel_cli(1, "sentinel", "set", "pod2", "notification-script", NOTIFY))
    assert.equals(1, rc, out)
    assert.truthy(has(out, "notification-script differs between Sentinels: /bin/true (" .. sentinel_addr(1) .. " pod2); "
      .. NOTIFY .. " ("), out)
  end)

  it("a first attempt still running is shown with retries=0 and is not a problem", function()
    c:settle(60)
    procs.write(ctx.dir .. "/hold", "")
    assert.equals("OK", c:sentinel_cli(1, "sentinel", "set", "pod2", "quorum", "2"))
    local rc, out
    local ok = pcall(procs.wait, function()
      rc, out = run("status", "--sentinel", seed(1))
      return out:find("running%s+retries=0%s+" .. NOTIFY:gsub("%p", "%%%0") .. " %+set") ~= nil
    end, 30, "the +set script running")
    local jout = ok and select(2, run("status", "--sentinel", seed(1), "--json")) or ""
    os.remove(ctx.dir .. "/hold")
    c:settle(60)
    assert(ok, out)
    assert.equals(0, rc, out)
    assert.falsy(has(out, "retry"), out)
    local seen = 0
    for _, s in ipairs(json.decode(jout).sentinels) do
      for _, p in ipairs(s.pending) do
        if p.state == "running" and p.argv[2] == "+set" then
          seen = seen + 1
          assert.equals(1, p.attempts, jout)
          assert.equals(0, p.retries, jout)
        end
      end
    end
    assert.is_true(seen > 0, jout)
  end)

  it("--master limits the work to those masters, and names one nobody monitors", function()
    c:settle(60) -- the +set events of the test before ran the script
    local rc, out = run("status", "--sentinel", seed(1), "--master", "pod2", "--json")
    assert.equals(0, rc, out .. "\n" .. ctx:logtext():sub(-3000))
    local doc = json.decode(out)
    assert.same({ "pod2" }, doc.masters)
    for _, s in ipairs(doc.sentinels) do assert.equals(1, #s.masters) end
    rc, out = run("status", "--sentinel", seed(1), "--master", "pod2", "--master", "nope")
    assert.equals(1, rc, out)
    assert.truthy(has(out, "master nope: no Sentinel reached monitors it"), out)
    rc, out = run("register", "--sentinel", seed(1), "--master", "nope", "--dry-run")
    assert.equals(1, rc, out)
  end)

  it("register --dry-run asks each Sentinel whether it would refuse, says so with the lines, and changes nothing",
    function()
      local sets = {}
      for i = 1, 3 do sets[i] = runner.count(procs.read(c.sentinels[i].log), "+set", true) end
      local rc, out = run("register", "--sentinel", seed(1), "--dry-run", "--notification", "/bin/true",
        "--reconfig", "/bin/true")
      -- the first two take scripts at runtime, the third (deny-scripts-reconfig yes) would refuse
      assert.equals(1, rc, out)
      for i = 1, 2 do
        assert.truthy(has(out, sentinel_addr(i) .. "  pod1  would set notification-script /bin/true (now: "
          .. NOTIFY .. ")"), out)
        assert.falsy(has(out, sentinel_addr(i) .. "  pod1  would be refused"), out)
      end
      assert.truthy(has(out, sentinel_addr(3) .. "  pod2  would be refused: deny-scripts-reconfig is yes (now: "
        .. "notification-script " .. NOTIFY .. ", client-reconfig-script " .. RECONF .. ")"), out)
      assert.truthy(has(out, sentinel_addr(3) .. "  WOULD BE REFUSED: deny-scripts-reconfig is yes"), out)
      assert.truthy(has(out, "# add these lines to the sentinel.conf of " .. sentinel_addr(3) .. ", then restart it:\n"
        .. "sentinel notification-script pod1 /bin/true\nsentinel client-reconfig-script pod1 /bin/true\n"
        .. "sentinel notification-script pod2 /bin/true\nsentinel client-reconfig-script pod2 /bin/true\n"), out)
      assert.truthy(has(out, "2 Sentinel/master pair(s) would not be set"), out)
      -- nothing changed, nothing was saved or announced
      for i = 1, 3 do
        for _, m in ipairs({ "pod1", "pod2" }) do
          local f = constellation.fields(c:sentinel_cli(i, "sentinel", "master", m))
          assert.equals(NOTIFY, f["notification-script"])
          assert.equals(RECONF, f["client-reconfig-script"])
        end
        assert.falsy(has(procs.read(c.sentinels[i].conf), "/bin/true"), c.sentinels[i].conf)
        assert.falsy(has(procs.read(c.sentinels[i].conf), "/dev/null/"), c.sentinels[i].conf)
        assert.equals(sets[i], runner.count(procs.read(c.sentinels[i].log), "+set", true), c.sentinels[i].log)
      end
      -- unregister --dry-run asks the same
      rc, out = run("unregister", "--sentinel", seed(1), "--dry-run")
      assert.equals(1, rc, out)
      assert.truthy(has(out, "# remove these lines from the sentinel.conf of " .. sentinel_addr(3)), out)
      assert.truthy(has(out, "\nsentinel notification-script pod1 " .. NOTIFY .. "\n"), out)
      assert.truthy(has(out, sentinel_addr(1) .. "  pod2  would set client-reconfig-script \"\" (now: " .. RECONF), out)
    end)

  it("reports a stopped Sentinel as unreachable and still shows the others", function()
    c:stop_sentinel(2)
    local rc, out = run("status", "--sentinel", seed(1), "--timeout", "1")
    c:start_sentinel(2)
    c:wait_sentinel(2)
    assert.equals(1, rc, out)
    assert.truthy(has(out, sentinel_addr(2) .. ": unreachable: Connection refused"), out)
    for _, i in ipairs({ 1, 3 }) do
      assert.truthy(out:find(sentinel_addr(i):gsub("%p", "%%%0") .. "%s+pod1%s+127%.0%.0%.1:%d+%s+master"), out)
    end
  end)

  it("a Sentinel that accepts and never answers costs its timeout, and the rest still report", function()
    local l = silent_listener()
    local rc, out = run("status", "--sentinel", "127.0.0.1:" .. l.port, "--sentinel", seed(1), "--timeout", "0.5")
    l.stop()
    assert.equals(1, rc, out)
    assert.truthy(has(out, "127.0.0.1:" .. l.port .. ": unreachable: timed out"), out)
    for i = 1, 3 do assert.truthy(out:find(sentinel_addr(i):gsub("%p", "%%%0") .. "%s+pod2%s"), out) end
  end)

  it("logs in with the password (and an ACL user) of watch mode, and fails cleanly without", function()
    local function acl(i, ...)
      local args = { "redis-cli", "-p", tostring(c.sentinels[i].port), "--no-auth-warning" }
      for _, a in ipairs({ ... }) do args[#args + 1] = a end
      for k, a in ipairs(args) do args[k] = procs.quote(a) end
      return (procs.sh(table.concat(args, " ") .. " 2>&1"):gsub("%s+$", ""))
    end
    for i = 1, 3 do
      assert.equals("OK", acl(i, "acl", "setuser", "ops", "on", ">opspw", "+@all"))
      assert.equals("OK", acl(i, "acl", "setuser", "default", "resetpass", ">s3cret"))
    end
    c:settle(60)
    local ok, err = pcall(function()
      ctx:config(string.format("redis = { port = %d }\nwatch = { password = 's3cret' }\n", c.store.port))
      local rc, out = run("status", "--sentinel", seed(1))
      assert.equals(0, rc, out)
      ctx:config(string.format("redis = { port = %d }\nwatch = { username = 'ops', password = 'opspw' }\n",
        c.store.port))
      rc, out = run("status", "--sentinel", seed(1))
      assert.equals(0, rc, out)
      ctx:config(string.format("redis = { port = %d }\nwatch = { password = 'wrong' }\n", c.store.port))
      rc, out = run("status", "--sentinel", seed(1))
      assert.equals(1, rc, out)
      assert.truthy(has(out, sentinel_addr(1) .. ": unreachable: authentication failed: WRONGPASS"), out)
      ctx:config(string.format("redis = { port = %d }\n", c.store.port))
      rc, out = run("status", "--sentinel", seed(1))
      assert.equals(1, rc, out)
      assert.truthy(has(out, sentinel_addr(1) .. ": unreachable: NOAUTH"), out)
    end)
    for i = 1, 3 do acl(i, "-a", "s3cret", "acl", "setuser", "default", "nopass") end
    ctx:config(string.format("redis = { port = %d }\n", c.store.port))
    assert(ok, err)
  end)

  it("shows a script waiting in Sentinel's retry queue with its retry count", function()
    procs.write(ctx.dir .. "/fail", "")
    local replica = c:replica_port()
    c:kill_node(replica)
    local rc, out
    local ok = pcall(procs.wait, function()
      rc, out = run("status", "--sentinel", seed(1))
      -- this replica's +sdown waiting on its retry (other failing scripts may be pending too)
      return out:find("retries=1%s+" .. NOTIFY:gsub("%p", "%%%0") .. " %+sdown slave") ~= nil
        and out:find("script waiting on retry 1: " .. NOTIFY:gsub("%p", "%%%0") .. " %+sdown") ~= nil
    end, 30, "the replica's +sdown pending with a retry")
    os.remove(ctx.dir .. "/fail")
    assert(ok, out)
    assert.equals(1, rc, out)
    assert.truthy(out:find("pending scripts on 127%.0%.0%.1:%d+ %(SENTINEL PENDING%-SCRIPTS%):"), out)
    assert.truthy(out:find("retries=1%s+" .. NOTIFY:gsub("%p", "%%%0") .. " %+sdown slave"), out)
    assert.truthy(out:find("script waiting on retry 1: " .. NOTIFY:gsub("%p", "%%%0") .. " %+sdown"), out)
    local _, jout = run("status", "--sentinel", seed(1), "--json")
    local doc = json.decode(jout)
    local found = false
    for _, s in ipairs(doc.sentinels) do
      for _, p in ipairs(s.pending) do
        if p.retries >= 1 and p.argv[1] == NOTIFY and p.argv[2] == "+sdown" then found = true end
      end
    end
    assert.is_true(found, jout)
  end)

  it("unregister clears the scripts where allowed, prints the lines to remove elsewhere, and status shows it",
    function()
      local rc, out = run("unregister", "--sentinel", seed(1))
      assert.equals(1, rc, out)
      for i = 1, 2 do
        assert.truthy(has(out, sentinel_addr(i) .. "  pod1  cleared"), out)
        local f = constellation.fields(c:sentinel_cli(i, "sentinel", "master", "pod2"))
        assert.is_nil(f["notification-script"])
        assert.is_nil(f["client-reconfig-script"])
      end
      assert.truthy(has(out, "# remove these lines from the sentinel.conf of " .. sentinel_addr(3)), out)
      assert.truthy(has(out, "\nsentinel notification-script pod1 " .. NOTIFY .. "\n"), out)
      rc, out = run("status", "--sentinel", seed(1))
      assert.equals(1, rc, out)
      assert.truthy(has(out, sentinel_addr(1) .. ", master pod1: no notification-script"), out)
      assert.truthy(has(out, sentinel_addr(2) .. ", master pod2: no client-reconfig-script"), out)
      assert.falsy(has(out, sentinel_addr(3) .. ", master pod1: no"), out)
    end)

  -- last: it leaves Sentinel 2 monitoring pod2 somewhere else
  it("names a master whose address the Sentinels disagree on", function()
    local real = constellation.fields(c:sentinel_cli(1, "sentinel", "master", "pod2"))
    local other = "127.0.0.1:" .. c.store.port
    assert.equals("OK", c:sentinel_cli(2, "sentinel", "remove", "pod2"))
    assert.equals("OK", c:sentinel_cli(2, "sentinel", "monitor", "pod2", "127.0.0.1", tostring(c.store.port), "2"))
    local rc, out = run("status", "--sentinel", seed(1), "--master", "pod2")
    assert.equals(1, rc, out)
    assert.truthy(has(out, "master pod2: Sentinels disagree on its address: "), out)
    assert.truthy(has(out, other .. " (" .. sentinel_addr(2) .. ")"), out)
    assert.truthy(has(out, real.ip .. ":" .. real.port .. " ("), out)
    local _, jout = run("status", "--sentinel", seed(1), "--master", "pod2", "--json")
    local found = false
    for _, p in ipairs(json.decode(jout).problems) do
      if p:find("Sentinels disagree", 1, true) then found = true end
    end
    assert.is_true(found, jout)
  end)
end)
