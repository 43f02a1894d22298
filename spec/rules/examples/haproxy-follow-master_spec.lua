-- examples/rules/haproxy-follow-master.lua: HAProxy follows each pod's
-- master through its admin socket, once per switch.
local testing = require("eventilator.testing")

local SOCK = "/run/haproxy/admin.sock"

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel }
end

-- `show servers state redis-cache` of a backend with a server on each node.
local STATE = table.concat({
  "1",
  "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    .. "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    .. "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl "
    .. "srv_check_port srv_check_addr srv_agent_addr srv_agent_port",
  "3 redis-cache 1 r1 127.0.0.1 0 0 1 1 20 8 2 0 6 0 0 0 - 17000 - 0 0 - - 0",
  "3 redis-cache 2 r2 127.0.0.1 2 0 1 1 900 15 3 4 6 0 0 0 - 17001 - 0 0 - - 0",
  "3 redis-cache 3 r3 127.0.0.1 2 0 1 1 900 15 3 4 6 0 0 0 - 17002 - 0 0 - - 0",
  "", "" }, "\n")

-- HAProxy's replies: `set server .. addr` says what changed (the first time;
-- after that, that there was nothing to change), `show servers state` the
-- table, state changes an empty line.
local function haproxy()
  local at = {}
  return function(sent)
    local server, addr = sent:match("^set server (%S+) addr (.-)\n")
    if server then
      if at[server] == addr then
        return "no need to change the addr, no need to change the port by 'stats socket command'\n"
      end
      at[server] = addr
      return "no need to change the addr, port changed from '17000' to '17002' by 'stats socket command'\n"
    end
    if sent:find("^show servers state") then return STATE end
    return "\n"
  end
end

local function commands(t)
  local out = {}
  for i, s in ipairs(t.tcp.sent) do
    assert.equal(SOCK, s.address)
    out[i] = s.data
  end
  return out
end

describe("haproxy-follow-master.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("haproxy-follow-master.lua"),
                      config = { haproxy = { socket = SOCK,
                                             backends = { pod1 = "redis/master", cache = "redis-cache" } } } }
    t.tcp.answer(SOCK, haproxy())
  end)
  after_each(function() t:close() end)

  it("repoints a pod's server, forces it up and shuts its sessions once across the Sentinels", function()
    local switch = { "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002" }
    assert.same({ "ok" }, from(t, "pid:11", switch).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", switch).outcomes) -- finds it done: no second cut
    assert.same({ "set server redis/master addr 127.0.0.1 port 17002\n",
                  "set server redis/master health up\n",
                  "shutdown sessions server redis/master\n",
                  "set server redis/master addr 127.0.0.1 port 17002\n",
                  "set server redis/master health up\n" }, commands(t))
  end)

  it("follows a failover back and forth between two nodes, every time", function()
    local there = { "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002" }
    local back = { "+switch-master", "pod1 127.0.0.1 17002 127.0.0.1 17000" }
    for _, ev in ipairs({ there, back, there }) do assert.same({ "ok" }, from(t, "pid:11", ev).outcomes) end
    local cuts = 0
    for _, c in ipairs(commands(t)) do
      if c == "shutdown sessions server redis/master\n" then cuts = cuts + 1 end
    end
    assert.equal(3, cuts)
    assert.equal("set server redis/master addr 127.0.0.1 port 17002\n", commands(t)[7])
  end)

  it("in a backend, readies the new master's server and forces it up, then puts the old one in maint", function()
    local r = from(t, "pid:11", { "+switch-master", "cache 127.0.0.1 17000 127.0.0.1 17002" })
    assert.same({ "ok" }, r.outcomes)
    assert.same({ "show servers state redis-cache\n",
                  "set server redis-cache/r3 state ready\n",
                  "set server redis-cache/r3 health up\n",
                  "set server redis-cache/r1 state maint\n",
                  "shutdown sessions server redis-cache/r1\n" }, commands(t))
  end)

  it("leaves a pod HAProxy does not serve alone", function()
    local r = from(t, "pid:11", { "+switch-master", "other 127.0.0.1 17000 127.0.0.1 17002" })
    assert.same({ "ok" }, r.outcomes)
    assert.same({}, t.tcp.sent)
  end)

  it("fails, so Sentinel retries, when HAProxy refuses the command", function()
    t.tcp.answer(SOCK, "No such server.\n")
    local r = from(t, "pid:11", { "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002" })
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("No such server", r.handlers[1].error)
  end)

  it("fails when the admin socket refuses the connection", function()
    t.tcp.answer(SOCK, { err = "connection refused" })
    local r = from(t, "pid:11", { "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002" })
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
  end)
end)
