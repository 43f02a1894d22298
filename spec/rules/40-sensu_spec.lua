-- The shipped rule 40-sensu.lua: trigger_on events as Sensu check results.
local testing = require("eventilator.testing")
local json = require("cjson")

describe("40-sensu.lua", function()
  it("sends +odown to the Sensu client socket", function()
    local t = testing.load{ rules = testing.shipped_rules("40-sensu.lua"),
                            config = { sensu = { enabled = true, host = "127.0.0.1", port = 3030 } } }
    t.tcp.answer("127.0.0.1:3030", "ok")
    local r = t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2")
    assert.same({ "ok" }, r.outcomes)
    local sent = json.decode(t.tcp.sent[1].data)
    assert.equal("pod-pod1", sent.source)
    assert.equal("127.0.0.1:3030", t.tcp.sent[1].address)
    t.tcp.answer("127.0.0.1:3030", "invalid")
    assert.same({ "failed" }, t:call("eventilator", "+odown", "master pod1 10.0.0.1 6379 #quorum 2/2").outcomes)
    t:close()
  end)
end)
