-- eventilator config: print the config a call would see, defaults merged,
-- as JSON (sorted keys). Settings that hold secrets are shown as "<set>"
-- unless --secrets is given, so the output can be pasted into a ticket.
-- With no config file (EVENTILATOR_CONF=/nonexistent) it prints the
-- built-in defaults: the specs' stand-in config is made from that output,
-- so src/config.c's schema stays the one place a default is declared.
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

function M.main(args, host)
  local secrets = false
  for i = 2, #args do
    if args[i] == "--secrets" then
      secrets = true
    else
      io.stderr:write("usage: eventilator config [--secrets]\n")
      return 2
    end
  end
  local config = host.load_config()
  if not config then return 2 end
  io.stdout:write(require("eventilator.cli").encode(secrets and config or redact(config)), "\n")
  return 0
end

return M
