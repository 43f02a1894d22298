-- Rules that can never fire: Sentinel's event names are a closed set, so an
-- on() pattern that matches none of them is a typo. `check` fails on it and
-- names the closest event; an event call warns once per rule file and runs.
local runner = require("runner")

describe("patterns that match no Sentinel event", function()
  local ctx
  before_each(function()
    ctx = runner.new()
    ctx:rule("10-typo.lua", table.concat({
      'on("+sdwon", function() log.info("typo ran") end)',
      'on({ "switch-master", "+odown" }, function() log.info("odown ran") end)',
      'on("+sdwon", function() end)', -- the same typo twice: one warning
      'on({ "+*down", "client-reconfig", "*" }, function() log.info("globs ran") end)',
    }, "\n") .. "\n")
    ctx:rule("20-fine.lua", 'on("+sdown", function() log.info("fine ran") end)\n')
  end)
  after_each(function() ctx:cleanup() end)

  it("`check` names each one with the closest event and exits 1", function()
    local rc, _, out = ctx:run("eventilator", "check")
    assert.equal(1, rc, out)
    assert.matches("10%-typo%.lua:1: `%+sdwon` matches no Sentinel event; did you mean `%+sdown`%?", out)
    assert.matches("10%-typo%.lua:2: `switch%-master` matches no Sentinel event; did you mean `%+switch%-master`%?", out)
    local _, n = out:gsub("sdwon` matches", "")
    assert.equal(1, n, out)
    assert.not_matches("%+odown` matches", out)
    assert.not_matches("down` matches", out:gsub("sdwon` matches", ""))
    assert.not_matches("20%-fine%.lua:%d+: ", out)
    assert.matches("2 pattern%(s%) never match", out)
  end)

  it("`check` passes when every pattern can match", function()
    os.remove(ctx.rules .. "/10-typo.lua")
    local rc, _, out = ctx:run("eventilator", "check")
    assert.equal(0, rc, out)
  end)

  it("an event call logs the warning once per rule file and still runs the rules", function()
    local rc, log = ctx:run("eventilator", "+sdown", "master mymaster 127.0.0.1 6379")
    assert.equal(0, rc, log)
    local _, n = log:gsub("`%+sdwon` matches no Sentinel event; did you mean `%+sdown`%?", "")
    assert.equal(1, n, log)
    assert.matches("globs ran", log)
    assert.matches("fine ran", log)
    assert.not_matches("typo ran", log)
  end)
end)
