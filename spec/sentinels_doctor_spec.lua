-- eventilator sentinels: usage errors, seeds from the config, and doctor
-- (this host as Sentinel's user sees it). The fleet itself is in
-- sentinels_spec.lua.
local procs = require("procs")
local runner = require("runner")
local json = require("cjson")

local function has(text, needle)
  return text:find(needle, 1, true) ~= nil
end

describe("eventilator sentinels: usage", function()
  local ctx
  before_each(function() ctx = runner.new() end)
  after_each(function() ctx:cleanup() end)

  it("exits 2 on bad usage and without any Sentinel to start from", function()
    local rc = ctx:run("eventilator", "sentinels", "status", "--bogus")
    assert.equals(2, rc)
    rc = ctx:run("eventilator", "sentinels", "frobnicate")
    assert.equals(2, rc)
    rc = ctx:run("eventilator", "sentinels", "status", "--timeout", "x", "--sentinel", "127.0.0.1:1")
    assert.equals(2, rc)
    rc = ctx:run("eventilator", "sentinels", "status")
    assert.equals(2, rc)
    assert.truthy(has(ctx:stderr(), "watch.sentinels"))
    rc = ctx:run("eventilator", "sentinels", "status", "--sentinel", "noport:")
    assert.equals(2, rc)
    rc = ctx:run("eventilator", "sentinels", "status", "--sentinel", "::1:26379") -- IPv6 needs []
    assert.equals(2, rc)
    rc = ctx:run("eventilator", "sentinels", "register", "--notification", "relative/path", "--sentinel", "127.0.0.1:1")
    assert.equals(2, rc)
  end)

  it("takes a seed without a port as Sentinel's own, 26379", function()
    local rc, _, out = ctx:run("eventilator", "sentinels", "status", "--sentinel", "127.0.0.1", "--sentinel",
      "[::1]", "--timeout", "0.5", "--json")
    assert.is_true(rc == 0 or rc == 1, ctx:stderr())
    local doc = json.decode(out)
    assert.equals("127.0.0.1:26379", doc.sentinels[1].addr)
    assert.equals("[::1]:26379", doc.sentinels[2].addr)
  end)

  it("says a data node is not a Sentinel", function()
    local node = procs.start_redis()
    local rc, _, out = ctx:run("eventilator", "sentinels", "status", "--sentinel", "127.0.0.1:" .. node.port)
    local jrc, _, jout = ctx:run("eventilator", "sentinels", "status", "--sentinel", "127.0.0.1:" .. node.port, "--json")
    node.stop()
    assert.equals(1, rc, out)
    assert.truthy(has(out, "127.0.0.1:" .. node.port .. ": not a Sentinel: it answers as Redis"), out)
    assert.is_nil(out:find("unreachable", 1, true), out)
    assert.equals(1, jrc, jout)
    assert.truthy(json.decode(jout).sentinels[1].error:find("^not a Sentinel"), jout)
  end)

  it("takes its seeds from watch.sentinels and reports every one that is down", function()
    local a, b = procs.closed_port(), procs.closed_port()
    ctx:config(string.format("watch = { sentinels = { '127.0.0.1:%d', '[::1]:%d' }, timeout = 0.5 }", a, b))
    local rc, _, out = ctx:run("eventilator", "sentinels", "status", "--json")
    assert.equals(1, rc, out)
    local doc = json.decode(out)
    assert.equals(2, #doc.sentinels)
    assert.equals("[::1]:" .. b, doc.sentinels[2].addr)
    assert.is_false(doc.sentinels[2].reachable)
    assert.equals(2, #doc.problems)
  end)
end)

describe("eventilator sentinels doctor", function()
  local ctx, store, root, user, scripts, unit
  local is_root = (procs.sh("id -u"):gsub("%s+$", "")) == "0"

  lazy_setup(function() store = procs.start_redis() end)
  lazy_teardown(function() if store then store.stop() end end)

  local function doctor(...)
    local rc, _, out = ctx:run("eventilator", "sentinels", "doctor", "--user", user, "--notification",
      scripts .. "/eventilator", "--reconfig", scripts .. "/reconfigurator", "--unit", unit, ...)
    return rc, out
  end

  before_each(function()
    -- Checked as the user Sentinel runs as: redis when we are root (root
    -- passes every mode check), otherwise ourselves.
    user = is_root and "redis" or (procs.sh("id -un"):gsub("%s+$", ""))
    ctx = runner.new()
    root = ctx.dir
    scripts = root .. "/lib/eventilator"
    unit = root .. "/redis-sentinel.service"
    os.execute(string.format("mkdir -p %s %s/state && cp /bin/true %s/eventilator && ln -s eventilator %s/reconfigurator",
      procs.quote(scripts), procs.quote(root), procs.quote(scripts), procs.quote(scripts)))
    os.execute(string.format("chmod 755 %s %s/lib %s && chmod 755 %s/eventilator", procs.quote(root), procs.quote(root),
      procs.quote(scripts), procs.quote(scripts)))
    if is_root then os.execute("chown redis " .. procs.quote(root .. "/state")) end
    -- Debian's unit, with the drop-in an operator adds for a folder of their own
    procs.write(unit, "[Unit]\nDescription=x\n[Service]\nNoExecPaths=/\nExecPaths=/usr/bin/redis-sentinel /usr/lib /lib\n" ..
      "ExecPaths=-" .. scripts .. "\n")
    ctx:config(string.format("redis = { port = %d }\n", store.port))
    os.execute("chmod 644 " .. procs.quote(ctx.conf))
    -- the log file as the package leaves /var/log/redis: Sentinel's user's
    procs.write(ctx.log, "")
    if is_root then os.execute("chown redis " .. procs.quote(ctx.log)) end
  end)

  after_each(function() ctx:cleanup() end)

  it("passes on a host set up right", function()
    local rc, out = doctor()
    assert.equals(0, rc, out)
    assert.truthy(has(out, "ok    notification-script " .. scripts .. "/eventilator: executable by " .. user), out)
    assert.truthy(has(out, "ok    metrics store 127.0.0.1:" .. store.port .. " answers"), out)
    assert.truthy(has(out, "all checks passed"), out)
  end)

  it("reports a script that is not executable, with its fix", function()
    os.execute("chmod 644 " .. procs.quote(scripts .. "/eventilator"))
    local rc, out = doctor()
    assert.equals(1, rc, out)
    assert.truthy(out:find("FAIL  notification%-script [^\n]* is not executable by " .. user .. " %(mode 0644"), out)
    assert.truthy(has(out, "fix: chmod 755 " .. scripts .. "/eventilator"), out)
  end)

  it("reports a folder on the way that Sentinel's user cannot enter", function()
    if not is_root then return end -- our own 0700 folder is ours to enter
    os.execute("chmod 700 " .. procs.quote(root .. "/lib"))
    local rc, out = doctor()
    assert.equals(1, rc, out)
    assert.truthy(has(out, "folder " .. root .. "/lib is not searchable by redis"), out)
    assert.truthy(has(out, "fix: chmod o+x " .. root .. "/lib"), out)
  end)

  it("reports a script outside the unit's ExecPaths (as under /opt), with its fix", function()
    procs.write(unit, "[Service]\nNoExecPaths=/\nExecPaths=/usr/bin/redis-sentinel /usr/lib /lib\n")
    local rc, out = doctor()
    assert.equals(1, rc, out)
    assert.truthy(has(out, "FAIL  notification-script " .. scripts .. "/eventilator lies outside the ExecPaths"), out)
    assert.truthy(has(out, "ExecPaths=" .. scripts), out)
  end)

  it("reports a state_dir Sentinel's user cannot write, with its fix", function()
    local sd = root .. "/ro"
    os.execute("mkdir -p " .. procs.quote(sd) .. " && chmod 555 " .. procs.quote(sd))
    ctx:config(string.format("redis = { port = %d }\nstate_dir = %q\n", store.port, sd))
    os.execute("chmod 644 " .. procs.quote(ctx.conf))
    local rc, out = doctor()
    assert.equals(1, rc, out)
    if is_root then -- root's folder: not Sentinel's user's, so no call uses it
      assert.truthy(has(out, "FAIL  state_dir " .. sd .. " belongs to uid 0, not to redis"), out)
      assert.truthy(has(out, "fix: if " .. sd .. " holds eventilator's state alone, chown -R redis: " .. sd
        .. "; else give state_dir a folder of its own: install -d -o redis -g redis -m 700 "
        .. "/var/lib/redis/eventilator"), out)
    else
      assert.truthy(has(out, "FAIL  state_dir " .. sd .. " is not writable by " .. user), out)
      assert.truthy(has(out, "fix: chmod 700 " .. sd), out)
    end
  end)

  it("reports a folder of state_dir a call run as root made, with a fix that cannot harm", function()
    -- Sentinel's calls warn "cannot keep the delivery record" on every failure, and doctor said all passed
    local retries = root .. "/state/retries"
    os.execute("mkdir -p " .. procs.quote(retries) .. " && chmod 700 " .. procs.quote(retries))
    if is_root then
      os.execute("chown redis " .. procs.quote(root .. "/state") .. " && chown root " .. procs.quote(retries))
    else
      os.execute("chmod 770 " .. procs.quote(retries)) -- as ourselves: one the group can write
    end
    local rc, out = doctor()
    assert.equals(1, rc, out)
    assert.truthy(has(out, "ok    state_dir " .. root .. "/state is " .. user .. "'s alone, writable by it"), out)
    if is_root then
      assert.truthy(has(out, "FAIL  state_dir folder " .. retries .. " belongs to uid 0, not to redis (uid "), out)
      assert.truthy(has(out, "a failed call keeps no delivery record, so its retry runs every handler again"), out)
      assert.truthy(has(out, "\n      fix: chown -R redis: " .. retries .. "\n"), out)
    else
      assert.truthy(has(out, "FAIL  state_dir folder " .. retries .. " is writable by its group or others (mode 0770)"),
        out)
      assert.truthy(has(out, "\n      fix: chmod go-w " .. retries .. "\n"), out)
    end
    assert.truthy(has(out, "ok    state_dir folder " .. root .. "/state/rules-cache: not made yet"), out)
    assert.falsy(has(out, "all checks passed"), out)
  end)

  it("reports a log file Sentinel's user cannot append to, with its fix", function()
    -- made by root's `check` before the file went to its folder's owner
    if is_root then os.execute("chown root " .. procs.quote(ctx.log)) end
    os.execute("chmod 440 " .. procs.quote(ctx.log))
    local rc, out = doctor()
    assert.equals(1, rc, out)
    assert.truthy(has(out, "FAIL  log file " .. ctx.log .. " is not writable by " .. user .. " (mode 0440"), out)
    assert.truthy(has(out, "its calls log to " .. ctx.fallback .. " instead"), out)
    assert.truthy(has(out, "fix: chown " .. user .. " " .. ctx.log), out)
  end)

  it("checks the fallback file when there is no syslog, and a log the unit's sandbox would not let Sentinel write",
    function()
      ctx:config(string.format("redis = { port = %d }\nrules_dir = %q\nstate_dir = %q\n", store.port, ctx.rules,
        root .. "/state"), true)
      os.execute("chmod 644 " .. procs.quote(ctx.conf))
      local rc, out = doctor()
      assert.truthy(has(out, "ok    log.target is syslog, but no syslog socket at " .. ctx.syslog
        .. " (no syslog daemon): a call logs to " .. ctx.fallback), out)
      if is_root then -- the spec's folder is root's 0755: redis may not make the file
        assert.equals(1, rc, out)
        assert.truthy(has(out, "FAIL  fallback log file " .. ctx.fallback .. " does not exist yet, and redis may not "
          .. "make files in " .. root), out)
        local fix = out:match("fix: (install %-m 640 %-o redis /dev/null [^\n]*) %(the file, not the folder%)")
        assert.truthy(fix, out)
        os.execute(fix)
        rc, out = doctor()
      end
      assert.equals(0, rc, out)
      assert.truthy(has(out, "ok    fallback log file " .. ctx.fallback), out)
      -- Debian's unit: ProtectSystem=strict, only its ReadWritePaths writable
      procs.write(unit, "[Service]\nNoExecPaths=/\nExecPaths=/usr/bin/redis-sentinel /usr/lib /lib\nExecPaths=-"
        .. scripts .. "\nProtectSystem=strict\nReadWritePaths=-/var/lib/redis\nReadWriteDirectories=-"
        .. root .. "/state\n")
      rc, out = doctor()
      assert.equals(1, rc, out)
      assert.truthy(has(out, "FAIL  fallback log file " .. ctx.fallback .. ": the unit's ProtectSystem=strict makes "
        .. "it read-only to Sentinel and its scripts, and it is under none of ReadWritePaths=/var/lib/redis "
        .. root .. "/state"), out)
      assert.truthy(has(out, "ok    state_dir " .. root .. "/state is " .. user .. "'s alone"), out)
    end)

  it("reports a metrics store that is down, with its fix", function()
    ctx:config(string.format("redis = { port = %d }\n", procs.closed_port())) -- nothing listens there
    os.execute("chmod 644 " .. procs.quote(ctx.conf))
    local rc, out = doctor()
    assert.equals(1, rc, out)
    assert.truthy(out:find("FAIL  metrics store 127%.0%.0%.1:%d+ does not answer"), out)
    assert.truthy(has(out, "metrics = { enabled = false }"), out)
  end)

  it("reports a rule file that does not load", function()
    ctx:rule("bad.lua", "on(")
    local rc, out = doctor()
    assert.equals(1, rc, out)
    assert.truthy(out:find("FAIL  1 of 1 rule file%(s%) fail to load"), out)
  end)
end)
