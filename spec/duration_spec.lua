-- eventilator.duration: the spans typed on the command line (silence add
-- --for, history --since), read and written one way.
local duration = require("eventilator.duration")

describe("eventilator.duration", function()
  it("reads a number and a unit, or several", function()
    local cases = { ["90s"] = 90, ["30m"] = 1800, ["2h"] = 7200, ["1d"] = 86400, ["1w"] = 604800,
                    ["1h30m"] = 5400, ["1d12h"] = 129600, ["0h5m"] = 300 }
    for text, secs in pairs(cases) do
      assert.equal(secs, duration.parse(text), text)
      assert.equal("integer", math.type(duration.parse(text)), text)
    end
  end)

  it("refuses what it cannot read for sure, saying how to write it", function()
    for _, text in ipairs({ "30", "", "m", "30 m", "1.5h", "-5m", "5y", "30mins", "h1", " 30m" }) do
      local secs, err = duration.parse(text)
      assert.is_nil(secs, text)
      assert.matches("30m", err, 1, true) -- an example of what works
    end
    assert.matches("no time at all", select(2, duration.parse("0s")))
    assert.matches("too long", select(2, duration.parse("99999999999d")))
    assert.is_nil(duration.parse(nil))
  end)

  it("writes the largest two adjacent units", function()
    local cases = { [0] = "0s", [-3] = "0s", [45] = "45s", [90] = "1m30s", [1799.9] = "29m59s", [3600] = "1h",
                    [3601] = "1h", [5400] = "1h30m", [90061] = "1d1h", [86405] = "1d" }
    for secs, text in pairs(cases) do assert.equal(text, duration.format(secs), tostring(secs)) end
  end)
end)
