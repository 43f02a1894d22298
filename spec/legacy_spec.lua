-- eventilator.legacy: the Go eventilator's TOML configs, mapped onto the
-- Lua config's keys; everything outside the supported subset is an error
-- naming the line.
local procs = require("procs")
local legacy = require("eventilator.legacy")

local function shared(name)
  return assert(procs.read(procs.shared .. "/legacy/" .. name), "missing ../shared/legacy/" .. name)
end

-- parse() must fail, naming this line and saying something matching `msg`.
local function fails_at(text, line, msg)
  local cfg, err = legacy.parse(text, "/etc/redis/eventilator.conf")
  assert.is_nil(cfg)
  assert.is_string(err)
  assert.matches("^/etc/redis/eventilator%.conf:" .. line .. ": ", err)
  if msg then assert.matches(msg, err) end
end

describe("eventilator.legacy", function()
  describe("the shipped Go samples", function()
    it("eventilator.conf parses and maps", function()
      local text = shared("eventilator.conf")
      local cfg, err = legacy.parse(text, "eventilator.conf")
      assert.is_nil(err)
      assert.same({
        redis = { host = "127.0.0.1", port = 6379 }, -- RedisAuth "" -> no password
        warnings = { enabled = false },
        slack = {
          token = "use-your-token-holmes", channel = "sentinel-events", enabled = false,
          username = "eventilator", -- AuthorName "" -> the default stays
          trigger_on = { "+sdown", "-sdown", "+odown", "-odown", "promoted-slave",
            "-failover-abort-no-good-slave" },
        },
        sensu = {
          enabled = true, host = "127.0.0.1", port = 3030,
          trigger_on = { "+odown", "-odown", "-failover-abort-no-good-slave" },
        },
      }, cfg)
    end)

    it("reconfigurator.conf parses and maps", function()
      local text = shared("reconfigurator.conf")
      assert.same({ redis = { host = "127.0.0.1", port = 6379 } }, legacy.parse(text, "reconfigurator.conf"))
    end)
  end)

  -- One detector decides, the binary's (src/core/config.c); these go through it.
  describe("detection by the binary", function()
    local runner = require("runner")
    local ctx
    before_each(function() ctx = runner.new() end)
    after_each(function() ctx:cleanup() end)

    -- The format `eventilator check` reports for a config text.
    local function format_of(text)
      ctx:config(text, true)
      ctx.env.EVENTILATOR_RULES = ctx.rules
      local _, _, out = ctx:run("eventilator", "check")
      return out:match("^config  %S+ %(([^)]*)%)") or out
    end

    it("takes Lua configs for Lua, whatever their table lines look like", function()
      assert.equal("lua", format_of('redis = { host = "10.0.0.1", port = 6379 }\nslack = {}\n'))
      assert.equal("lua", format_of("-- RedisAddress is the old name\nredis = {}\n"))
      assert.equal("lua", format_of("t = {\n  [1] = 2,\n}\n"))
      assert.equal("lua", format_of('local name = "db1"\nhosts = {\n  [name] = "10.0.0.9",\n}\n'))
      assert.equal("lua", format_of('local b = "k"\nhosts = {\n  [ "a" ] = 1,\n  [b]\n  = 2,\n}\n'))
      assert.equal("lua", format_of('notes = [[\n[Slack]\n]]\n'))
      assert.equal("lua", format_of("x = 1 -- RedisPort = 6380\n"))
    end)

    it("takes a section header or a Go top-level key for the Go eventilator's TOML", function()
      assert.equal("legacy TOML", format_of("# old config\n[SensuJIT]\nEnabled = true\n"))
      assert.equal("legacy TOML", format_of("[Slack] # comment\n"))
      assert.equal("legacy TOML", format_of("[Slack]\r\nEnabled = false\r\n"))
      assert.equal("legacy TOML", format_of("RedisPort = 6380\n"))
      assert.equal("legacy TOML", format_of("  RedisEnabled=true\r\n"))
      assert.equal("legacy TOML", format_of('RedisAuth="x"'))
      assert.equal("legacy TOML", format_of(shared("eventilator.conf")))
      assert.equal("legacy TOML", format_of(shared("reconfigurator.conf")))
    end)

    it("runs events with a Lua config holding a `[name] = ...` line (was: exit 2, every event lost)", function()
      ctx:config('local name = "db1"\nhosts = {\n  [name] = "10.0.0.9",\n}\n')
      ctx:rule("10-hosts.lua", 'on("+sdown", function() log.info("host %s", config.hosts.db1) end)\n')
      local rc, log = ctx:run("eventilator", "+sdown", "master mymaster 127.0.0.1 6379")
      assert.equal(0, rc, log)
      assert.matches("host 10%.0%.0%.9", log)
    end)
  end)

  describe("parse", function()
    it("maps every key", function()
      local cfg = assert(legacy.parse([[
RedisAddress = "10.1.2.3"
RedisPort = 6380
RedisAuth = "s3cret"
RedisEnabled = true
[Slack]
Token = "xoxb-1"
Channel = "C0123"
Enabled = true
AuthorName = "sentinel"
Username = "bot"
TriggerOn = ["+odown"]
[SensuJIT]
Enabled = true
IP = "10.0.0.9"
Port = 3031
TriggerOn = ["+odown", "+promoted-slave"]
HandlerNoGoodSlave = "zendesk"
HandlerPromotedSlave = "mail"
]], "x"))
      assert.same({
        redis = { host = "10.1.2.3", port = 6380, password = "s3cret" },
        warnings = { enabled = true },
        slack = { token = "xoxb-1", channel = "C0123", enabled = true, author_name = "sentinel",
          username = "bot", trigger_on = { "+odown" } },
        sensu = { enabled = true, host = "10.0.0.9", port = 3031,
          trigger_on = { "+odown", "+promoted-slave" },
          handler_no_good_slave = "zendesk", handler_promoted_slave = "mail" },
      }, cfg)
    end)

    it("reads comments, blank lines, CRLF, escapes, literal strings and trailing commas", function()
      local cfg = assert(legacy.parse(table.concat({
        "\239\187\191# a BOM, then a comment",
        "",
        "   RedisAddress = 'C:\\literal' # trailing comment",
        "RedisAuth = \"q\\\"b\\\\s\\n\\t\\u00e9\\U0001F600\"",
        "[ Slack ]  # spaced header",
        "\tTriggerOn = [ \"+odown\" , '-odown', ]",
      }, "\r\n"), "x"))
      assert.equal("C:\\literal", cfg.redis.host)
      assert.equal('q"b\\s\n\t\u{e9}\u{1F600}', cfg.redis.password)
      assert.same({ "+odown", "-odown" }, cfg.slack.trigger_on)
    end)

    it("matches key and section names without regard to case, as the Go decoder did", function()
      local cfg = assert(legacy.parse("redisport = 1\n[slack]\nTRIGGERON = []\n[sensujit]\nip = 'h'\n", "x"))
      assert.same({ redis = { port = 1 }, slack = { trigger_on = {} }, sensu = { host = "h" } }, cfg)
    end)

    it("treats an empty string as unset", function()
      local cfg = assert(legacy.parse('RedisAuth = ""\n[Slack]\nAuthorName = \'\'\nToken = ""\n', "x"))
      assert.is_nil(cfg.redis.password)
      assert.is_nil(cfg.slack.author_name)
      assert.is_nil(cfg.slack.token)
    end)

    it("names the file and line of anything outside the subset", function()
      fails_at("RedisPort = 6379\n\nRedisAuth = { a = 1 }\n", 3, "inline tables")
      fails_at("[Slack]\nTriggerOn = [\n  \"+odown\",\n]\n", 2, "multi%-line arrays")
      fails_at('[Slack]\nToken = """\nabc"""\n', 2, "multi%-line strings")
      fails_at("[Slack]\nToken = '''abc'''\n", 2, "multi%-line strings")
      fails_at("Redis.Port = 1\n", 1, "dotted keys")
      fails_at("RedisPort = 1979-05-27\n", 1, "dates")
      fails_at("RedisPort = 07:32:00\n", 1, "dates")
      fails_at("RedisPort = 6379.0\n", 1, "floats")
      fails_at("RedisPort = 1e3\n", 1, "floats")
      fails_at("RedisPort = inf\n", 1, "floats")
      fails_at("RedisPort = 0x1F\n", 1, "hexadecimal")
      fails_at("RedisPort = 06379\n", 1, "leading zeros")
      fails_at("# c\n[[Slack]]\n", 2, "arrays of tables")
      fails_at("RedisPort = 1\nRedisPort = 2\n", 2, "duplicate key RedisPort %(first set on line 1%)")
      fails_at("[Slack]\nEnabled = true\nenabled = false\n", 3, "duplicate key")
      fails_at("[Slack]\n[SensuJIT]\n[Slack]\n", 3, "defined twice")
      fails_at("[Slack]\n[Sensu]\n", 2, "unknown section %[Sensu%]")
      fails_at("[Slack.x]\n", 1, "dotted")
      fails_at("[Slack]\nAuthorSubname = \"x\"\n", 2, "unknown key AuthorSubname in %[Slack%]")
      fails_at("RedisHost = \"x\"\n", 1, "unknown top%-level key RedisHost")
      fails_at("[Slack]\nTriggerOn = [[\"a\"]]\n", 2, "nested arrays")
      fails_at('"RedisPort" = 1\n', 1, "quoted keys")
      fails_at("RedisPort 6379\n", 1, "expected =")
      fails_at("RedisPort =\n", 1, "missing value")
      fails_at('RedisAuth = "abc\n', 1, "unterminated string")
      fails_at('RedisAuth = "a\\xb"\n', 1, "unknown escape")
      fails_at('RedisAuth = "\\uD800"\n', 1, "unicode escape")
      fails_at('RedisAuth = "a" "b"\n', 1, "unexpected text after value")
      fails_at("RedisEnabled = yes\n", 1, "invalid value yes")
      fails_at("RedisPort = 99999999999999999999\n", 1, "out of range")
    end)

    it("checks each value's type", function()
      fails_at('RedisPort = "6379"\n', 1, "RedisPort must be an integer")
      fails_at("RedisPort = 70000\n", 1, "port number")
      fails_at('RedisEnabled = "true"\n', 1, "true or false")
      fails_at("RedisAddress = 1\n", 1, "must be a string")
      fails_at("[Slack]\nTriggerOn = \"+odown\"\n", 2, "array of strings")
      fails_at("[Slack]\nTriggerOn = [\"+odown\", 1]\n", 2, "array of strings")
      fails_at("[SensuJIT]\nHandlerNoGoodSlave = true\n", 2, "must be a string")
      fails_at("[SensuJIT]\nHandlerPromotedSlave = [\"a\"]\n", 2, "must be a string")
    end)

    it("uses 'config' when no file name is given", function()
      local _, err = legacy.parse("x = 1")
      assert.matches("^config:1: ", err)
    end)
  end)
end)
