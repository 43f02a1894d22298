-- eventilator.dedupe: act once per event across all Sentinels.
--
-- Every Sentinel that sees +sdown, +odown or +switch-master calls its
-- notification script, so with three Sentinels a page would go out three
-- times. dedupe.once(ev, ttl) claims the event's key (dedupe.key) in the
-- configured Redis store with SET NX EX: the first caller gets true and acts,
-- the others get false and skip. The claim records who made it (host and
-- Sentinel pid), so Sentinel's retry of the winner's failed call gets true
-- again instead of losing the event. When the store can't be reached, once()
-- returns nil, err: the handler fails and Sentinel retries, rather than
-- acting twice.
--
--   on("+odown", function(ev)
--     local first, err = dedupe.once(ev)
--     if first == nil then return nil, err end
--     if not first then return true end   -- another Sentinel has it
--     ...
--   end)
local M = {}

-- The settings this module reads (config.dedupe): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
dedupe = {
  { "prefix", "string", "eventilator:dedupe:" },
  { "ttl", "integer", 300 },
}
]==]

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("l")
  f:close()
  return s
end

-- Who we are: this host and the Sentinel that called us (our parent).
function M.owner()
  local stat = read("/proc/self/stat") or ""
  local ppid = stat:match("^%d+ %b() %S+ (%d+)") or "?"
  return (read("/proc/sys/kernel/hostname") or "localhost") .. ":" .. ppid
end

-- key(ev [, reporter]) -> the event's identity: the same string from every
-- Sentinel that reports this one event, whatever differs between their
-- reports (+odown's votes, the master's address after '@' as each knows it;
-- docs/watch.md, "Event identity"). An event about the reporting Sentinel
-- itself (+vote-for-leader, -failover-abort-not-elected, +tilt, ...) names
-- it: `reporter`, else ev.sentinel in watch mode, else this Sentinel
-- (owner(), looked up only for those). ev is the table a handler got.
function M.key(ev, reporter)
  local mt = type(ev) == "table" and getmetatable(ev)
  local identity = type(mt) == "table" and mt.identity
  if not identity then
    error("bad argument #1 to 'key' (the event table a handler got expected)", 2)
  end
  return identity(ev, reporter or ev.sentinel or M.owner)
end

-- once(ev | key [, ttl [, opts]]) -> true (act) | false (someone else has) | nil, err
-- ev: the event, claimed by dedupe.key(ev); or a key string of your own.
-- ttl: seconds the claim lives (default config.dedupe.ttl); opts.owner
-- overrides the claimant's identity (and is the reporter of an event about
-- the reporting Sentinel); other opts go to redis connect().
function M.once(key, ttl, opts)
  if type(key) == "table" then
    key = M.key(key, opts and opts.owner)
  elseif type(key) ~= "string" or key == "" then
    error("bad argument #1 to 'once' (event table or non-empty string expected)", 2)
  end
  local cfg = require("eventilator.config").dedupe or {}
  ttl = ttl or cfg.ttl or 300
  if math.type(ttl) ~= "integer" or ttl <= 0 then
    error("bad argument #2 to 'once' (positive integer seconds expected)", 2)
  end
  local owner = opts and opts.owner or M.owner()
  local conn
  if opts then
    conn = {}
    for k, v in pairs(opts) do if k ~= "owner" then conn[k] = v end end
  end
  local client, err = require("eventilator.store").connect(conn)
  if not client then return nil, "dedupe: " .. tostring(err) end
  local full = (cfg.prefix or "eventilator:dedupe:") .. key
  local replies, perr = client:pipeline({
    { "SET", full, owner, "NX", "EX", ttl },
    { "GET", full },
  })
  client:close()
  if not replies then return nil, "dedupe: " .. tostring(perr) end
  for i = 1, 2 do
    if type(replies[i]) == "table" and replies[i].err then
      return nil, "dedupe: " .. replies[i].err
    end
  end
  if replies[1] == "OK" then return true end
  return replies[2] == owner -- our own earlier claim: Sentinel's retry of our call
end

return M
