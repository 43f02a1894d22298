-- Run by tooling_spec through plain `busted` in the repo root: proves that
-- .busted picks Lua 5.4 and the helper (Debian's busted runs on `lua`,
-- often 5.1, where the specs and C modules cannot load).
describe("plain busted", function()
  it("runs on Lua 5.4 with the spec helper", function()
    assert.equal("Lua 5.4", _VERSION)
    assert.is_truthy(package.path:find("spec/support/?.lua", 1, true))
  end)
end)
