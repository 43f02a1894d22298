-- `eventilator silence add | list | expire` through the built binary, against
-- a private redis-server as config.redis: what is stored (one hash per
-- silence expiring at its end, two indexes), what list prints, and the exit
-- codes (0 done, 1 store down or no such silence, 2 bad usage).
local procs = require("procs")
local runner = require("runner")
local json = require("cjson")

describe("eventilator silence", function()
  local ctx, store

  setup(function() store = procs.start_redis() end)
  teardown(function() store.stop() end)

  before_each(function()
    procs.cli(store.port, "FLUSHALL")
    ctx = runner.new()
    ctx:config(string.format("redis = { port = %d }", store.port))
  end)
  after_each(function() ctx:cleanup() end)

  local function stderr() return procs.read(ctx.dir .. "/stderr") or "" end
  local function cli(...) return procs.cli(store.port, ...) end
  local function silence(...) return ctx:run("eventilator", "silence", ...) end

  -- silence add ... -> the id it printed
  local function add(...)
    local rc, _, out = silence("add", ...)
    assert.equal(0, rc, stderr())
    local id = out:match("^(%x+)\n$")
    assert.is_string(id, "add printed " .. tostring(out))
    return id
  end

  it("add stores the silence in config.redis with an id, expiring at its end; list and expire", function()
    local id = add("--pod", "pod1", "--event", "+*down", "--for", "30m", "--comment", "planned failover",
      "--author", "alice")
    assert.equal(8, #id)
    local key = "eventilator:silence:" .. id
    local h = require("constellation").fields(cli("HGETALL", key))
    assert.same({ "+*down", "pod1", "alice", "planned failover", id },
      { h.event, h.pod, h.author, h.comment, h.id })
    local starts, ends = tonumber(h.starts), tonumber(h.ends)
    assert.equal(30 * 60 * 1000, ends - starts)
    assert.equal(ends, tonumber(cli("PEXPIRETIME", key))) -- it goes when it ends
    assert.equal(ends, tonumber(cli("ZSCORE", "eventilator:silences:pod1", id)))
    assert.equal(ends, tonumber(cli("ZSCORE", "eventilator:silences", id)))
    assert.equal(ends, tonumber(cli("PEXPIRETIME", "eventilator:silences:pod1")))
    assert.matches("info: silences: added " .. id .. ": pod pod1, events +*down, until ", ctx:logtext(), 1, true)

    local rc, _, out = silence("list")
    assert.equal(0, rc)
    assert.matches("^ID%s+POD%s+EVENT%s+ENDS%s+LEFT%s+AUTHOR%s+COMMENT\n", out)
    assert.matches(id .. "  pod1  +*down  " .. os.date("!%Y-%m-%dT%H:%M:%SZ", ends // 1000) .. "  ", out, 1, true)
    assert.matches("  alice   planned failover\n", out, 1, true)
    assert.matches("  (29m%d+s)  ", out) -- seconds since the add

    rc, _, out = silence("list", "--json")
    assert.equal(0, rc)
    local list = json.decode(out)
    assert.equal(1, #list)
    assert.same({ id = id, pod = "pod1", event = "+*down", author = "alice", comment = "planned failover" },
      { id = list[1].id, pod = list[1].pod, event = list[1].event, author = list[1].author,
        comment = list[1].comment })
    assert.equal(ends / 1000, list[1].ends)
    assert.equal(starts / 1000, list[1].starts)

    rc = silence("expire", id)
    assert.equal(0, rc, stderr())
    assert.matches("info: silences: expired " .. id .. ": pod pod1", ctx:logtext(), 1, true)
    assert.equal("0", cli("EXISTS", key, "eventilator:silences:pod1", "eventilator:silences"))
    rc, _, out = silence("list")
    assert.equal(0, rc)
    assert.equal("no silences\n", out)
    rc, _, out = silence("list", "--json")
    assert.equal(0, rc)
    assert.equal("[]\n", out)

    assert.equal(1, (silence("expire", id)))
    assert.matches("no such silence: " .. id, stderr(), 1, true)
  end)

  it("every event of the pod without --event; list orders by end; one expire leaves the others", function()
    local long = add("--pod", "pod1", "--for", "2h", "--comment", "upgrade")
    local short = add("--pod", "pod2", "--event", "+odown", "--for=90s", "--comment=x")
    local _, _, out = silence("list", "--json")
    local list = json.decode(out)
    assert.same({ short, long }, { list[1].id, list[2].id })
    assert.equal("*", list[2].event)
    assert.equal(0, (silence("expire", short)))
    assert.equal("1", cli("ZCARD", "eventilator:silences"))
    assert.equal("0", cli("EXISTS", "eventilator:silences:pod2"))
    assert.equal("1", cli("EXISTS", "eventilator:silences:pod1"))
  end)

  it("--author defaults to $SUDO_USER, then $USER", function()
    ctx.env = { SUDO_USER = "carol", USER = "root" }
    local a = add("--pod", "pod1", "--for", "1h", "--comment", "c")
    ctx.env = { SUDO_USER = "", USER = "dave" }
    local b = add("--pod", "pod1", "--for", "1h", "--comment", "c")
    assert.equal("carol", cli("HGET", "eventilator:silence:" .. a, "author"))
    assert.equal("dave", cli("HGET", "eventilator:silence:" .. b, "author"))
  end)

  it("bad usage exits 2 and says what is wrong, before it asks the store", function()
    ctx:config(string.format("redis = { port = %d }", procs.closed_port())) -- would be exit 1
    local cases = {
      { { "add", "--for", "30m", "--comment", "c" }, "--pod NAME is required" },
      { { "add", "--pod", "pod1", "--comment", "c" }, "--for DURATION is required" },
      { { "add", "--pod", "pod1", "--for", "30", "--comment", "c" }, '"30" is not a duration' },
      { { "add", "--pod", "pod1", "--for", "0m", "--comment", "c" }, "no time at all" },
      { { "add", "--pod", "pod1", "--for", "30m" }, "--comment TEXT is required" },
      { { "add", "--pod", "pod1", "--for", "30m", "--comment", "  " }, "--comment TEXT is required" },
      { { "add", "--pod", "pod1", "--event", "+odwn", "--for", "30m", "--comment", "c" },
        "--event `+odwn` matches no Sentinel event; did you mean `+odown`?" },
      { { "add", "--pod", "pod 1", "--for", "30m", "--comment", "c" }, "a master name has no spaces" },
      { { "add", "--pdo", "pod1" }, "unknown option '--pdo'" },
      { { "add", "--pod", "a", "--pod", "b" }, "--pod given twice" },
      { { "add", "--pod" }, "--pod needs a value" },
      { { "list", "--xml" }, "unknown option '--xml'" },
      { { "expire" }, "one silence ID expected" },
      { { "expire", "a", "b" }, "one silence ID expected" },
      { { "mute" }, "unknown command 'mute'" },
      { {}, "add, list or expire?" },
    }
    for _, c in ipairs(cases) do
      local rc = silence(table.unpack(c[1]))
      local what = table.concat(c[1], " ")
      assert.equal(2, rc, what)
      assert.matches(c[2], stderr(), 1, true, what)
      assert.matches("usage: eventilator silence add", stderr(), 1, true)
    end
    local rc, _, out = silence("--help")
    assert.equal(0, rc)
    assert.matches("eventilator silence expire ID", out, 1, true)
    assert.equal(0, (silence("add", "--help")))
  end)

  it("a store that is down: add, list and expire exit 1 and say so", function()
    ctx:config(string.format("redis = { port = %d, timeout = 1 }", procs.closed_port()))
    for _, args in ipairs({ { "add", "--pod", "pod1", "--for", "30m", "--comment", "c" }, { "list" },
                            { "list", "--json" }, { "expire", "0badc0de" } }) do
      local rc, _, out = silence(table.unpack(args))
      assert.equal(1, rc, table.concat(args, " "))
      assert.equal("", out)
      assert.matches("store (config.redis): ", stderr(), 1, true)
      assert.matches("refused", stderr(), 1, true)
    end
  end)

  it("a silence ends by itself: gone from the store and from list", function()
    local id = add("--pod", "pod1", "--for", "1s", "--comment", "short")
    procs.wait(function() return cli("EXISTS", "eventilator:silence:" .. id) == "0" end, 10, "the silence's end")
    local _, _, out = silence("list")
    assert.equal("no silences\n", out)
  end)
end)
