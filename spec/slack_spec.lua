-- eventilator.slack against the HTTP stand-in (spec/support/httpd.py):
-- the webhook and chat.postMessage requests as sent, and every way Slack
-- can say no.
local procs = require("procs")
local rulefile = require("rulefile")
local json = require("cjson")

local CFG = require("hostless") -- the config the modules see
local silenced = require("silenced")

local slack = require("eventilator.slack")

local function odown()
  return {
    name = "+odown", mode = "eventilator", pod = "cache<1>&co",
    text = "master cache<1>&co 10.0.0.5 6379 #quorum 2/3",
    instance = { type = "master", name = "cache<1>&co", ip = "10.0.0.5", port = 6379 },
    master = { name = "cache<1>&co", ip = "10.0.0.5", port = 6379 },
    votes = 2, quorum = 3, host = "sentinel1.example.com", time = 1772352307.5,
  }
end

local function elapsed_since(t0)
  return procs.now() - t0
end

describe("eventilator.slack", function()
  local dir, port, pid, base, logf, replyf

  local function requests()
    local out = {}
    for l in (procs.read(logf) or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(l) end
    return out
  end
  local function last() local r = requests() return r[#r], #r end
  local function reply(t)
    if t then procs.write(replyf, json.encode(t)) else os.remove(replyf) end
  end

  setup(function()
    dir = procs.tmpdir()
    logf, replyf = dir .. "/requests.jsonl", dir .. "/reply.json"
    pid = procs.spawn(string.format("python3 %s 0 --ready %s --log %s --reply %s",
      procs.quote(procs.src .. "/spec/support/httpd.py"), procs.quote(dir .. "/ready"), procs.quote(logf),
      procs.quote(replyf)), dir .. "/httpd.out")
    port = procs.ready_port(pid, dir .. "/ready", "httpd.py", dir .. "/httpd.out")
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    procs.halt(pid)
    procs.rmtree(dir)
  end)

  before_each(function()
    reply(nil)
    os.remove(logf)
    CFG.slack = { enabled = true, channel = "sentinel-events", username = "eventilator",
      author_name = "eventilator", timeout = 1,
      trigger_on = { "+sdown", "-sdown", "+odown", "-odown", "+promoted-slave" } }
  end)

  describe("incoming webhook", function()
    it("posts the message as JSON, escaped, with colour, fields and text", function()
      CFG.slack.webhook_url = base .. "/services/T000/B000/XXXXSECRET"
      assert.is_true(slack.notify(odown()))
      local req, n = last()
      assert.equal(1, n)
      assert.equal("POST", req.method)
      assert.equal("/services/T000/B000/XXXXSECRET", req.path)
      assert.matches("^application/json", req.headers["content-type"])
      assert.is_nil(req.headers["authorization"])
      local msg = json.decode(req.body)
      assert.is_nil(msg.channel) -- a webhook posts to its own channel
      assert.equal("eventilator", msg.username)
      assert.equal("+odown master cache&lt;1&gt;&amp;co (10.0.0.5:6379)"
        .. " is objectively down (2 of quorum 3 agree)", msg.text)
      local att = msg.attachments[1]
      assert.equal("danger", att.color)
      assert.equal("eventilator", att.author_name)
      assert.equal(msg.text, att.fallback)
      local fields = {}
      for _, f in ipairs(att.fields) do fields[f.title] = f.value end
      assert.same({
        Event = "+odown", Pod = "cache&lt;1&gt;&amp;co", Instance = "master",
        Address = "10.0.0.5:6379", ["Reported by"] = "sentinel1.example.com",
      }, fields)
      assert.equal(1772352307, att.ts)
      assert.is_nil(req.body:find("<", 1, true))
    end)

    it("fails on a non-2xx reply, with the status", function()
      CFG.slack.webhook_url = base .. "/status/500"
      local ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.matches("HTTP 500", err)
      CFG.slack.webhook_url = base .. "/x"
      reply({ status = 404, body = "no_service" })
      ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.matches("HTTP 404: no_service", err)
    end)

    it("fails on 429 with Retry-After", function()
      CFG.slack.webhook_url = base .. "/x"
      reply({ status = 429, headers = { ["Retry-After"] = "30" }, body = "rate_limited" })
      local ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.matches("429", err)
      assert.matches("Retry%-After 30", err)
    end)

    it("fails when the server hangs past the timeout", function()
      CFG.slack.webhook_url = base .. "/hang"
      local t0 = procs.now()
      local ok, err = slack.notify(odown())
      local took = elapsed_since(t0)
      assert.is_nil(ok)
      assert.is_string(err)
      assert.is_true(took < 4, "took " .. took .. " s")
    end)

    it("keeps the webhook secret out of error messages", function()
      CFG.slack.webhook_url = "http://127.0.0.1:" .. procs.closed_port() .. "/services/T000/B000/XXXXSECRET"
      local ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.is_nil(err:find("XXXXSECRET", 1, true), err)
      assert.matches("/services/", err)
    end)
  end)

  describe("chat.postMessage", function()
    before_each(function()
      CFG.slack.token = "xoxb-test-token"
      CFG.slack.api_url = base .. "/api"
      CFG.slack.channel = "C0123ABCD"
    end)

    it("posts with the Bearer token and the channel, and checks ok", function()
      reply({ status = 200, headers = { ["Content-Type"] = "application/json" },
        body = { ok = true, channel = "C0123ABCD", ts = "1.2" } })
      local ev = {
        name = "+sdown", mode = "eventilator", pod = "cache1",
        instance = { type = "slave", name = "10.0.0.7:6379", ip = "10.0.0.7", port = 6379 },
        master = { name = "cache1", ip = "10.0.0.5", port = 6379 }, host = "s1", time = 1,
      }
      assert.is_true(slack.notify(ev))
      local req = last()
      assert.equal("POST", req.method)
      assert.equal("/api/chat.postMessage", req.path)
      assert.equal("Bearer xoxb-test-token", req.headers["authorization"])
      assert.matches("^application/json", req.headers["content-type"])
      local msg = json.decode(req.body)
      assert.equal("C0123ABCD", msg.channel)
      assert.equal("+sdown replica 10.0.0.7:6379 of pod cache1 is subjectively down", msg.text)
      assert.equal("warning", msg.attachments[1].color)
    end)

    it("takes a channel by name and per-call options", function()
      reply({ status = 200, body = { ok = true } })
      assert.is_true(slack.notify(odown(), { channel = "#ops", username = "bot" }))
      local msg = json.decode(last().body)
      assert.equal("#ops", msg.channel)
      assert.equal("bot", msg.username)
    end)

    it("fails on ok:false with Slack's error", function()
      reply({ status = 200, body = { ok = false, error = "channel_not_found" } })
      local ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.matches("channel_not_found", err)
    end)

    it("fails on a reply that is not JSON", function()
      reply({ status = 200, body = "<html>proxy</html>" })
      local ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.matches("not JSON", err)
    end)

    it("fails on 500 and on 429 with Retry-After", function()
      reply({ status = 500, body = "oops" })
      local ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.matches("HTTP 500", err)
      reply({ status = 429, headers = { ["Retry-After"] = "7" },
        body = { ok = false, error = "ratelimited" } })
      ok, err = slack.notify(odown())
      assert.is_nil(ok)
      assert.matches("Retry%-After 7", err)
    end)

    it("fails when the API hangs past the timeout", function()
      CFG.slack.api_url = base .. "/hang"
      local t0 = procs.now()
      local ok, err = slack.notify(odown())
      local took = elapsed_since(t0)
      assert.is_nil(ok)
      assert.matches("chat.postMessage", err)
      assert.is_true(took < 4, "took " .. took .. " s")
    end)

    it("prefers webhook_url when both are set", function()
      CFG.slack.webhook_url = base .. "/hook"
      assert.is_true(slack.notify(odown()))
      assert.equal("/hook", last().path)
    end)
  end)

  it("sends nothing for an event a silence matches, and succeeds; other events go out", function()
    CFG.slack.webhook_url = base .. "/services/T000/B000/XXXXSECRET"
    local q = silenced.start(CFG, { pod = "cache<1>&co", event = "+*down" })
    finally(q.stop)
    assert.is_true(slack.notify(odown()))
    assert.equal(0, #requests())
    assert.matches("info: slack: +odown cache<1>&co silenced by " .. q.id .. " (planned failover, by spec, until ",
      q.log(), 1, true)
    local up = odown()
    up.name = "-odown" -- not matched by +*down
    assert.is_true(slack.notify(up))
    assert.equal(1, #requests())
  end)

  it("fails without webhook_url or token", function()
    local ok, err = slack.notify(odown())
    assert.is_nil(ok)
    assert.matches("webhook_url or slack.token", err)
    assert.is_nil(procs.read(logf))
  end)

  describe("message", function()
    it("colours by severity", function()
      assert.equal("danger", slack.color({ name = "+odown" }))
      assert.equal("danger", slack.color({ name = "-failover-abort-no-good-slave" }))
      assert.equal("danger", slack.color({ name = "-failover-abort-slave-timeout" }))
      assert.equal("danger", slack.color({ name = "+sdown", instance = { type = "sentinel" } }))
      assert.equal("good", slack.color({ name = "-odown" }))
      assert.equal("good", slack.color({ name = "-sdown", instance = { type = "slave" } }))
      assert.equal("warning", slack.color({ name = "+sdown", instance = { type = "master" } }))
      assert.equal("warning", slack.color({ name = "+switch-master" }))
    end)

    it("summarises failovers and unknown events in one line", function()
      assert.equal("pod cache1 switched master from 10.0.0.1:6379 to [::1]:6380", slack.summary({
        name = "+switch-master", pod = "cache1",
        old_master = { ip = "10.0.0.1", port = 6379 }, new_master = { ip = "::1", port = 6380 } }))
      assert.equal("pod pod1 fails over from 10.0.0.1:6379 to 10.0.0.2:6380 (leader, start)", slack.summary({
        name = "client-reconfig", pod = "pod1", role = "leader", state = "start",
        old_master = { ip = "10.0.0.1", port = 6379 }, new_master = { ip = "10.0.0.2", port = 6380 } }))
      assert.equal("+made-up some text", slack.summary({ name = "+made-up", text = "some text" }))
      local msg = slack.message({ name = "client-reconfig", pod = "pod1", role = "leader", host = "h",
        old_master = { ip = "10.0.0.1", port = 6379 }, new_master = { ip = "10.0.0.2", port = 6380 } })
      local fields = {}
      for _, f in ipairs(msg.attachments[1].fields) do fields[f.title] = f.value end
      assert.equal("10.0.0.1:6379 -&gt; 10.0.0.2:6380", fields.Address)
      assert.equal("leader", fields.Role)
    end)

    it("escapes &, < and >", function()
      assert.equal("a &amp;&lt;b&gt;", slack.escape("a &<b>"))
    end)
  end)

  describe("default rule", function()
    local function load_rule(config) return rulefile("30-slack.lua", config) end

    it("registers nothing when disabled", function()
      assert.same({}, load_rule({ slack = { enabled = false, trigger_on = { "+odown" } } }))
    end)

    it("registers trigger_on, an unsigned name for both signs", function()
      local r = load_rule({ slack = { enabled = true, trigger_on = { "+odown", "promoted-slave" } } })
      assert.equal(1, #r)
      assert.same({ "+odown", "*promoted-slave" }, r[1].pattern)
    end)
  end)
end)
