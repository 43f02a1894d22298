-- examples/rules/webhook.lua: the leader's failover to the deploy tooling
-- (signed), masters going down to the chat bot (unsigned, once).
local testing = require("eventilator.testing")
local json = require("cjson")

local DEPLOY, BOT = "https://deploy.example.test/hooks/redis", "https://bot.example.test/redis"
local ODOWN = { "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2" }

local function from(t, sentinel, args)
  return t:call{ argv0 = "eventilator", args = args, sentinel = sentinel }
end

describe("webhook.lua (example)", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.examples("webhook.lua"),
                      config = { webhook = { url = DEPLOY, secret = "a long random string",
                                             headers = { ["X-Team"] = "storage" } },
                                 chatbot = { url = BOT } } }
  end)
  after_each(function() t:close() end)

  it("posts the leader's failover, signed", function()
    assert.same({ "ok" }, t:call("reconfigurator", "pod1", "observer", "start",
                                 "127.0.0.1", "17000", "127.0.0.1", "17002").outcomes)
    assert.same({}, t.http.sent)
    local r = t:call("reconfigurator", "pod1", "leader", "start", "127.0.0.1", "17000", "127.0.0.1", "17002")
    assert.same({ "ok" }, r.outcomes)
    local req = t.http.sent[1]
    assert.same({ "POST", DEPLOY, "storage" }, { req.method, req.url, req.headers["X-Team"] })
    assert.matches("^sha256=%x+$", req.headers["X-Eventilator-Signature"])
    local body = json.decode(req.body)
    assert.same({ "client-reconfig", "leader" }, { body.name, body.role })
  end)

  it("tells the bot about +odown once, unsigned", function()
    assert.same({ "ok" }, from(t, "pid:11", ODOWN).outcomes)
    assert.same({ "ok" }, from(t, "pid:12", { "+odown", "master pod1 127.0.0.1 17000 #quorum 3/2" }).outcomes)
    assert.equal(1, #t.http.sent)
    assert.equal(BOT, t.http.sent[1].url)
    assert.is_nil(t.http.sent[1].headers["X-Eventilator-Signature"])
    assert.is_nil(t.http.sent[1].headers["X-Team"])
  end)

  it("fails, so Sentinel retries, when the receiver answers 500", function()
    t.http.answer(DEPLOY, { status = 500, body = "oops" })
    local r = t:call("reconfigurator", "pod1", "leader", "start", "127.0.0.1", "17000", "127.0.0.1", "17002")
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
  end)
end)
