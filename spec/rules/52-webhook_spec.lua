-- The shipped rule 52-webhook.lua: the events in webhook.trigger_on as JSON
-- to webhook.url, signed with webhook.secret.
local testing = require("eventilator.testing")
local json = require("cjson")

local URL = "https://hooks.example.test/redis"

describe("52-webhook.lua", function()
  local t
  before_each(function()
    t = testing.load{ rules = testing.shipped_rules("52-webhook.lua"),
                      config = { webhook = { enabled = true, url = URL, secret = "s3cret",
                                             headers = { ["X-Team"] = "storage" },
                                             trigger_on = { "odown", "+switch-master" } } } }
  end)
  after_each(function() t:close() end)

  it("posts +switch-master, signed", function()
    t.http.answer("POST " .. URL, { status = 204 })
    local r = t:call("eventilator", "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002")
    assert.same({ "ok" }, r.outcomes)
    assert.equal(1, #t.http.sent)
    local req = t.http.sent[1]
    assert.equal("POST", req.method)
    assert.equal(URL, req.url)
    assert.equal("storage", req.headers["X-Team"])
    assert.equal("application/json", req.headers["Content-Type"])
    assert.equal(require("eventilator.webhook").sign("s3cret", req.body), req.headers["X-Eventilator-Signature"])
    local body = json.decode(req.body)
    assert.equal("+switch-master", body.name)
    assert.equal("pod1", body.pod)
  end)

  it("takes both signs of a name given without one", function()
    assert.same({ "ok" }, t:call("eventilator", "+odown", "master pod1 127.0.0.1 17000 #quorum 2/2").outcomes)
    assert.same({ "ok" }, t:call("eventilator", "-odown", "master pod1 127.0.0.1 17000").outcomes)
    assert.equal(2, #t.http.sent)
  end)

  it("ignores events not in trigger_on", function()
    assert.same({}, t:call("eventilator", "+sdown", "master pod1 127.0.0.1 17000").handlers)
    assert.same({}, t.http.sent)
  end)

  it("fails, so Sentinel retries, when the receiver answers 500", function()
    t.http.answer(URL, { status = 500, body = "oops" })
    local r = t:call("eventilator", "+switch-master", "pod1 127.0.0.1 17000 127.0.0.1 17002")
    assert.same({ "failed" }, r.outcomes)
    assert.equal(1, r.exit)
    assert.matches("webhook: HTTP 500", r.handlers[1].error)
  end)
end)
