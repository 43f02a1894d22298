-- eventilator.webhook against spec/support/httpd.py, whose /verify checks
-- the signature with Python's hmac (the receiver's side, written apart from
-- ours), in a stock lua5.4 and through the built binary.
local procs = require("procs")
local runner = require("runner")
local rulefile = require("rulefile")
local standin = require("standin")
local defaults = require("defaults")
local json = require("cjson")

local CFG = require("hostless")
local silenced = require("silenced")
local webhook = require("eventilator.webhook")

local SECRET = "It's a secret to everybody \0 with a NUL"

local function ev()
  return { name = "+odown", mode = "eventilator", pod = "pod1", host = "s1.example.net", time = 1772352307.25,
    text = "master pod1 10.0.0.5 6379 #quorum 2/3", args = { "+odown", "master pod1 10.0.0.5 6379 #quorum 2/3" },
    instance = { type = "master", name = "pod1", ip = "10.0.0.5", port = 6379 }, votes = 2, quorum = 3 }
end

describe("webhook", function()
  local S

  setup(function() S = standin.start({ secret = "right secret" }) end)
  teardown(function() S.stop() end)

  before_each(function()
    S.reset()
    CFG.webhook = defaults().webhook
    CFG.webhook.url = S.url .. "/verify/hook"
    CFG.webhook.secret = "right secret"
    CFG.webhook.timeout = 2
  end)

  it("does nothing until webhook.enabled", function()
    local cfg = defaults()
    assert.same({}, (rulefile("52-webhook.lua", cfg)))
    cfg.webhook.enabled = true
    local reg = rulefile("52-webhook.lua", cfg)
    assert.equal(1, #reg)
    assert.same(cfg.webhook.trigger_on, reg[1].pattern)
  end)

  it("posts ev with host and time as JSON, signed so the receiver's hmac agrees", function()
    assert.is_true(webhook.post(ev()))
    local r = S.requests()
    assert.equal(1, #r)
    local req = r[1]
    assert.equal("POST", req.method)
    assert.matches("^application/json", req.headers["content-type"])
    assert.matches("^sha256=%x+$", req.headers["x-eventilator-signature"])
    assert.equal(64 + 7, #req.headers["x-eventilator-signature"])
    assert.matches("^%d+$", req.headers["x-eventilator-timestamp"])
    local body = json.decode(req.body)
    assert.equal("+odown", body.name)
    assert.equal("s1.example.net", body.host)
    assert.equal(1772352307.25, body.time)
    assert.equal(6379, body.instance.port)
  end)

  it("a wrong secret fails the receiver's verification", function()
    local ok, err = webhook.post(ev(), { secret = "wrong secret" })
    assert.is_nil(ok)
    assert.matches("HTTP 401", err)
  end)

  it("signs with any bytes as the key (RFC 4231 test case 2, and a NUL)", function()
    assert.equal("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      webhook.sign("Jefe", "what do ya want for nothing?"))
    assert.not_equal(webhook.sign(SECRET, "x"), webhook.sign(SECRET:sub(1, SECRET:find("\0", 1, true) - 1), "x"))
  end)

  it("passes the configured headers through; a Content-Type among them wins", function()
    CFG.webhook.url = S.url .. "/hook"
    CFG.webhook.secret = nil
    CFG.webhook.headers = { ["X-Team"] = "storage", Authorization = "Bearer abc", ["content-type"] = "application/vnd.x+json" }
    assert.is_true(webhook.post(ev()))
    local h = S.requests()[1].headers
    assert.equal("storage", h["x-team"])
    assert.equal("Bearer abc", h["authorization"])
    assert.equal("application/vnd.x+json", h["content-type"])
    assert.is_nil(h["x-eventilator-signature"]) -- no secret, no signature
  end)

  it("sends nothing for a silenced pod, and succeeds", function()
    local q = silenced.start(CFG, { pod = "pod1" })
    finally(q.stop)
    assert.is_true(webhook.post(ev()))
    assert.same({}, S.requests())
    assert.matches("info: webhook: +odown pod1 silenced by " .. q.id, q.log(), 1, true)
  end)

  it("fails on a non-2xx reply and without a url", function()
    CFG.webhook.url = S.url .. "/status/502"
    local ok, err = webhook.post(ev())
    assert.is_nil(ok)
    assert.matches("HTTP 502", err)
    CFG.webhook.url = nil
    ok, err = webhook.post(ev())
    assert.is_nil(ok)
    assert.matches("webhook%.url", err)
  end)

  it("through the binary: signed and verified; a wrong secret exits 1", function()
    local ctx = runner.new()
    os.execute(string.format("cp %s/rules/52-webhook.lua %s/", procs.quote(procs.src), procs.quote(ctx.rules)))
    ctx:config(string.format("webhook = { enabled = true, url = %q, secret = %q, headers = { ['X-Team'] = 'storage' } }",
      S.url .. "/verify/hook", "right secret"))
    local rc, log = ctx:run("eventilator", "+odown", "master pod1 10.0.0.5 6379 #quorum 2/3")
    assert.equal(0, rc, log)
    assert.equal("storage", S.requests()[1].headers["x-team"])
    ctx:config(string.format("webhook = { enabled = true, url = %q, secret = 'wrong' }", S.url .. "/verify/hook"))
    rc, log = ctx:run("eventilator", "-odown", "master pod1 10.0.0.5 6379")
    assert.equal(1, rc, log)
    assert.matches("webhook: HTTP 401", log)
    ctx:cleanup()
  end)

  it("installed: the full runtime finds the crypto module where cmake --install puts it", function()
    local root = procs.tmpdir()
    local out, rc = procs.sh(string.format("DESTDIR=%s cmake --install %s --prefix /usr/lib/eventilator 2>&1",
      procs.quote(root), procs.quote(procs.build)))
    assert.equal(0, rc, out)
    local ctx = runner.new()
    ctx:rule("10-signed.lua", 'on("+odown", function(ev) return require("eventilator.webhook").post(ev) end)\n')
    ctx:config(string.format("webhook = { url = %q, secret = 'right secret' }", S.url .. "/verify/hook"))
    out, rc = procs.sh(string.format("EVENTILATOR_CONF=%s %s/usr/lib/eventilator/bin/eventilator +odown %s 2>&1",
      procs.quote(ctx.conf), procs.quote(root), procs.quote("master pod1 10.0.0.5 6379 #quorum 2/3")))
    assert.equal(0, rc, out .. ctx:logtext())
    assert.equal(1, #S.requests())
    ctx:cleanup()
    procs.rmtree(root)
  end)
end)
