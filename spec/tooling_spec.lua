-- The repo's own tooling: what a developer runs by hand.
local procs = require("procs")

describe("tooling", function()
  it("plain `busted` in the repo root runs the specs on Lua 5.4 with the helper", function()
    local out, rc = procs.sh(string.format("cd %s && env -u EVENTILATOR_BUILD busted -o TAP spec/support/lua54_probe_spec.lua 2>&1",
      procs.quote(procs.src)))
    assert.equal(0, rc, out)
    assert.matches("ok 1 ", out)
  end)
end)
