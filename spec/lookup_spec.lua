-- Host-name lookups end within the binding's timeout (and the budget) even
-- when the DNS server never answers. Each case runs under bubblewrap in a
-- private network namespace (loopback only) whose /etc/resolv.conf points at
-- a UDP listener on 127.0.0.1:53 that reads queries and never replies, with
-- glibc told to wait 5 s x 3 attempts. Unbounded, one lookup takes 15 s and
-- the outer `timeout` kills the run; bounded, each ends on its own timeout.
local procs = require("procs")

local NAME = "db.eventilator.test"

-- Can this machine make an unprivileged network namespace?
local function sandbox_ok()
  local _, rc = procs.sh("bwrap --dev-bind / / --unshare-net --unshare-user --uid 0 true 2>/dev/null")
  return rc == 0
end

-- Run `cmd` (a shell string) in the sandbox with the silent resolver, at
-- most `limit` seconds. Returns stdout+stderr and the exit code.
local function in_silent_dns(dir, cmd, limit)
  procs.write(dir .. "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:5 attempts:3\n")
  procs.write(dir .. "/silent_dns.py", table.concat({
    "import socket",
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
    "s.bind(('127.0.0.1', 53))",
    "open(" .. string.format("%q", dir .. "/dns.ready") .. ", 'w').close()",
    "while True:",
    "    s.recvfrom(4096)  # and never a word back",
  }, "\n") .. "\n")
  -- The sanitized build preloads libasan into busted's lua5.4: only the
  -- command under test gets it, not bwrap, sh or the Python stand-in.
  local preload = os.getenv("LD_PRELOAD")
  if preload and preload ~= "" then cmd = "LD_PRELOAD=" .. procs.quote(preload) .. " " .. cmd end
  local inner = string.format(
    "python3 %s & while [ ! -e %s ]; do sleep 0.05; done; timeout %d sh -c %s",
    procs.quote(dir .. "/silent_dns.py"), procs.quote(dir .. "/dns.ready"), limit, procs.quote(cmd))
  return procs.sh(string.format(
    "env -u LD_PRELOAD timeout %d bwrap --dev-bind / / --unshare-net --unshare-user --uid 0 --cap-add CAP_NET_BIND_SERVICE " ..
    "--unshare-uts --hostname nodotshost --unshare-pid --proc /proc --die-with-parent --bind %s /etc/resolv.conf sh -c %s 2>&1",
    limit + 5, procs.quote(dir .. "/resolv.conf"), procs.quote(inner)))
end

describe("host-name lookups with a DNS server that never answers", function()
  local dir
  before_each(function()
    if not sandbox_ok() then
      pending("bubblewrap cannot create a network namespace here")
    end
    dir = procs.tmpdir()
  end)
  after_each(function() procs.rmtree(dir) end)

  it("tcp.connect and redis.connect end on their connect_timeout", function()
    procs.write(dir .. "/probe.lua", string.format([[
package.cpath = %q .. "/lib/eventilator/?.so;" .. package.cpath
local tcp = require("eventilator.tcp")
local redis = require("eventilator.redis")
print(select(2, tcp.connect(%q, 6379, { connect_timeout = 0.5 })))
print(select(2, redis.connect({ host = %q, connect_timeout = 0.5 })))
print(select(2, tcp.connect("127.0.0.1", 1, { connect_timeout = 0.5 })))
]], procs.build, NAME, NAME))
    local out, rc = in_silent_dns(dir, "lua5.4 " .. procs.quote(dir .. "/probe.lua"), 8)
    assert.equal(0, rc, out)
    assert.matches("tcp " .. NAME:gsub("%p", "%%%0") .. ":6379: timed out after 0%.5 s %(name lookup%)\n", out)
    assert.matches("redis " .. NAME:gsub("%p", "%%%0") .. ":6379: timed out after 0%.5 s %(name lookup%)\n", out)
    -- a literal never waits on the resolver
    assert.matches("tcp 127%.0%.0%.1:1: connection refused\n", out)
  end)

  it("the time budget bounds a lookup that asked for longer", function()
    procs.write(dir .. "/probe.lua", string.format([[
package.cpath = %q .. "/lib/eventilator/?.so;" .. package.cpath
local tcp = require("eventilator.tcp")
local redis = require("eventilator.redis")
local clock = io.popen("env -u LD_PRELOAD python3 -c 'import time; print(time.monotonic())'"):read("n")
debug.getregistry()["eventilator.deadline"] = clock + 1
print(select(2, tcp.connect(%q, 6379, { connect_timeout = 30 })))
debug.getregistry()["eventilator.deadline"] = clock + 2
print(select(2, redis.connect({ host = %q, connect_timeout = 30 })))
]], procs.build, NAME, NAME))
    local out, rc = in_silent_dns(dir, "lua5.4 " .. procs.quote(dir .. "/probe.lua"), 8)
    assert.equal(0, rc, out)
    assert.matches("tcp [^\n]*: time budget exhausted %(name lookup%)\n", out)
    assert.matches("redis [^\n]*: time budget exhausted %(name lookup%)\n", out)
  end)

  it("ev.host falls back to the short host name, once per call", function()
    local rules = dir .. "/rules"
    os.execute("mkdir -p " .. procs.quote(rules))
    procs.write(dir .. "/eventilator.conf", string.format(
      "log = { target = %q, level = \"info\" }\nrules_dir = %q\nstate_dir = %q\n",
      dir .. "/eventilator.log", rules, dir .. "/state"))
    procs.write(rules .. "/10-host.lua", [[
on("+sdown", function(ev)
  for _ = 1, 5 do log.info("host=%s", ev.host) end
end)
]])
    local out, rc = in_silent_dns(dir, string.format("EVENTILATOR_CONF=%s %s +sdown 'master m 127.0.0.1 6379'",
      procs.quote(dir .. "/eventilator.conf"), procs.quote(procs.build .. "/bin/eventilator")), 8)
    assert.equal(0, rc, out .. (procs.read(dir .. "/eventilator.log") or ""))
    local log = procs.read(dir .. "/eventilator.log") or ""
    local _, n = log:gsub("host=nodotshost\n", "")
    assert.equal(5, n, log)
  end)

  it("the Sentinel client ends on its timeout: sentinels status, and a watcher whose runs and SIGTERM never wait", function()
    os.execute("mkdir -p " .. procs.quote(dir .. "/rules"))
    procs.write(dir .. "/rules/10-record.lua", string.format([[
on("+sdown", function(ev) local f = assert(io.open(%q, "a")); f:write(ev.pod, "\n"); f:close() end)
]], dir .. "/handled"))
    -- the fake Sentinel beside the seed that never resolves; seconds since boot as the clock
    procs.write(dir .. "/probe.sh", string.format([[
now() { cut -d' ' -f1 /proc/uptime; }
since() { echo "$1 $(now)" | awk '{ print $2 - $1 }'; }
bin=%s dir=%s name=%s
env -u LD_PRELOAD python3 %s --ready "$dir/fake.port" >/dev/null 2>&1 &
until [ -s "$dir/fake.port" ]; do sleep 0.05; done
port=$(cat "$dir/fake.port")
printf 'log = { target = "%%s/watch.log", level = "debug" }\nrules_dir = "%%s/rules"\nstate_dir = "%%s/state"\n' \
  "$dir" "$dir" "$dir" > "$dir/eventilator.conf"
printf 'watch = { sentinels = { "%%s:26379", "127.0.0.1:%%s" }, timeout = 0.5 }\n' "$name" "$port" >> "$dir/eventilator.conf"
export EVENTILATOR_CONF="$dir/eventilator.conf"
t0=$(now)
"$bin" sentinels status --sentinel "$name:26379" --timeout 0.5
echo "status rc=$? secs=$(since $t0)"
"$bin" watch & pid=$!
until grep -q 'cannot connect' "$dir/watch.log" 2>/dev/null && grep -q 'connected and subscribed' "$dir/watch.log"; do
  sleep 0.05
done
t0=$(now)
env -u LD_PRELOAD redis-cli -p "$port" PUBLISH +sdown 'master pod1 127.0.0.1 6379' >/dev/null
until [ -s "$dir/handled" ]; do sleep 0.05; done
echo "handled=$(since $t0)"
t0=$(now)
kill -TERM $pid
wait $pid
echo "watch rc=$? stop=$(since $t0)"
]], procs.quote(procs.build .. "/bin/eventilator"), procs.quote(dir), NAME,
      procs.quote(procs.src .. "/spec/support/fakesentinel.py")))
    local out, rc = in_silent_dns(dir, "sh " .. procs.quote(dir .. "/probe.sh"), 15)
    local log = procs.read(dir .. "/watch.log") or ""
    assert.equal(0, rc, out .. log)
    assert.matches(NAME:gsub("%p", "%%%0") .. ":26379: unreachable: timed out after 0%.5 s %(name lookup%)", out)
    local secs = tonumber(out:match("status rc=1 secs=([%d.]+)"))
    assert.is_true(secs ~= nil and secs < 3, out)
    assert.matches("cannot connect: " .. NAME:gsub("%p", "%%%0") .. ":26379: timed out after 0%.5 s %(name lookup%)", log)
    -- the lookups that hang on DNS hold up no run: it starts at once, and no wait is logged
    local handled = tonumber(out:match("handled=([%d.]+)"))
    assert.is_true(handled ~= nil and handled < 3, out .. log)
    assert.is_nil(log:find("runs wait for them", 1, true), log)
    local stop = tonumber(out:match("watch rc=0 stop=([%d.]+)"))
    assert.is_true(stop ~= nil and stop < 1.5, out .. log)
  end)
end)
