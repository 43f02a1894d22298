-- eventilator.duration: the command line's durations (history --since, silence add --for).
local duration = require("eventilator.duration")

describe("duration.parse", function()
  it("takes a number and a unit, or several in a row", function()
    assert.equal(90, duration.parse("90s"))
    assert.equal(1800, duration.parse("30m"))
    assert.equal(7200, duration.parse("2h"))
    assert.equal(86400, duration.parse("1d"))
    assert.equal(5400, duration.parse("1h30m"))
    assert.equal(0, duration.parse("0s"))
  end)

  it("refuses a bare number, an unknown unit, signs, spaces and fractions, saying what it takes", function()
    for _, bad in ipairs({ "30", "", "2w", "-1h", "1.5h", " 2h", "2h ", "h", "2hh", "9999999999s" }) do
      local v, err = duration.parse(bad)
      assert.is_nil(v, bad)
      assert.matches("not a duration: .*90s, 30m, 2h, 1d", err)
    end
    assert.is_nil((duration.parse(nil)))
  end)
end)
