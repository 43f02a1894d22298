-- Every event into the Redis Stream stream.key (docs/stream.md), once
-- across the Sentinels: the first Sentinel to report an event adds it, the
-- others skip (dedupe.once in config.redis). Consumers read it with
-- XREADGROUP.
if not config.stream.enabled then return end

on("*", function(ev)
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end -- store unreachable: Sentinel retries
  if not first then return true end        -- another Sentinel added it
  return require("eventilator.stream").add(ev)
end)
