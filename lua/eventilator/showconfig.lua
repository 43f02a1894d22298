-- eventilator config [--reconfig]: print the config a call would see (with
-- --reconfig, the reconfigurator's: eventilator.conf with reconfigurator.conf
-- over it), defaults merged, as JSON (sorted keys); its problems on
-- stderr. Settings that hold secrets are shown as "<set>"
-- unless --secrets is given, so the output can be pasted into a ticket.
-- With no config file (EVENTILATOR_CONF=/nonexistent) it prints the
-- built-in defaults: the specs' stand-in config is made from that output,
-- so the schema (each module's settings block, the host's in src/core/schema.c)
-- stays the one place a default is declared.
local M = {}

local SECRET = { password = true, token = true, secret = true, routing_key = true, webhook_url = true }

local function redact(t)
  local out = {}
  for k, v in pairs(t) do
    if SECRET[k] and v ~= nil and v ~= "" then
      out[k] = "<set>"
    elseif type(v) == "table" then
      out[k] = redact(v)
    else
      out[k] = v
    end
  end
  return out
end

-- The config as plain tables: a section with an error (every read of it
-- raises) shows as { ["<error>"] = "file:line: ..." }.
local function plain(config, problems)
  local broken, out = {}, {}
  for _, p in ipairs(problems) do
    if p.kind == "section" then
      broken[p.name] = (broken[p.name] and broken[p.name] .. "; " or "") .. p.msg
    end
  end
  for k, v in pairs(config) do out[k] = broken[k] and { ["<error>"] = broken[k] } or v end
  return out
end

function M.main(args, host)
  local secrets, name = false, nil
  for i = 2, #args do
    if args[i] == "--secrets" then
      secrets = true
    elseif args[i] == "--reconfig" then
      name = "reconfigurator"
    else
      io.stderr:write("usage: eventilator config [--secrets] [--reconfig]\n")
      return 2
    end
  end
  local config, _, _, problems = host.load_config(name)
  if not config then return 1 end
  config = plain(config, problems)
  io.stdout:write(require("eventilator.cli").encode(secrets and config or redact(config)), "\n")
  for _, p in ipairs(problems) do io.stderr:write("config ", p.msg, "\n") end
  return #problems == 0 and 0 or 1
end

return M
