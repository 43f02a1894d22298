-- Every example rule (examples/rules/*.lua) loads with `eventilator check`
-- in one rules folder beside the default rules, every receiver enabled.
local procs = require("procs")
local runner = require("runner")

describe("example rules", function()
  it("pass eventilator check beside the default rules", function()
    local ctx = runner.new()
    procs.shipped_rules(ctx.rules)
    os.execute(string.format("for f in %s/examples/rules/*.lua; do cp \"$f\" %s/90-example-$(basename \"$f\"); done",
      procs.quote(procs.src), procs.quote(ctx.rules)))
    ctx:config([[
      alertmanager = { enabled = true, labels = { cluster = "test" } }
      pagerduty = { enabled = true, routing_key = "0123456789abcdef0123456789abcdef" }
      webhook = { enabled = true, url = "http://127.0.0.1:9/hook", secret = "s" }
      stream = { enabled = true }
      oncall = { pods = { "pod1" } }
    ]])
    local examples = procs.sh("ls " .. procs.quote(procs.src .. "/examples/rules") .. " | grep -c '\\.lua$'")
    local rc, _, out = ctx:run("eventilator", "check")
    assert.equal(0, rc, out .. ctx:stderr())
    local n = 0
    for _ in out:gmatch("\nok      [^\n]*/90%-example%-") do n = n + 1 end
    assert.equal(tonumber(examples), n, out)
    assert.matches("50%-alertmanager%.lua: \"%+odown\"", out)
    assert.matches("0 failed", out)
    ctx:cleanup()
  end)
end)
