-- eventilator.failovers: recorded calls, in time order, grouped into
-- failovers, one group per master at a time (`eventilator history`,
-- docs/history.md). No I/O: the caller parses the calls (the host's own
-- parser gives each its pod) and hands them over one by one.
--
-- The rule, from how Sentinel reports a failover (../shared/sentinel/events.md,
-- corpus-failover.jsonl): a failover of a master opens at its first
-- `+sdown master`, `+odown` or `+try-failover` (a `SENTINEL FAILOVER` has no
-- down events) and ends at
--   - `+failover-end`, which only the leader sends;
--   - `-odown`, unless a Sentinel is still failing over (a Sentinel that
--     is not the leader can send -odown before the leader ends);
--   - `-sdown master`, when no Sentinel ever agreed it was down (no +odown).
-- Sentinel still reports the failover after its end: the leader's own
-- `+switch-master` comes right after `+failover-end`, and the old master is
-- reported `+sdown slave` a down-after-milliseconds later; so the master's
-- calls in the TAIL seconds after the end still join it, unless they open a
-- new one (a down event about the old master is a slow Sentinel's, and
-- joins). A group that heard nothing for IDLE seconds is over too (its end
-- was not recorded: the leader's host was not among the files). Calls with
-- no master in them (`+new-epoch`, `+vote-for-leader`) join the open failover
-- their Sentinel last reported, or the only open one. Everything else (start-
-- up, a replica down in quiet times) is outside any failover: counted, not
-- grouped.
local M = {}

M.TAIL = 60 -- seconds: down-after-milliseconds is 30 s by default
M.IDLE = 600 -- seconds: more than Sentinel's wait before a new attempt (2 x failover-timeout, 6 min)

-- The phases a failover shows, in order, and the events that mark each (the
-- first one counts; "ended" is the call that ended it).
M.PHASES = { "down", "elected", "promoted", "switched", "ended" }
local PHASE_OF = {
  ["+odown"] = "down", ["+elected-leader"] = "elected", ["+selected-slave"] = "elected",
  ["+promoted-slave"] = "promoted", ["+switch-master"] = "switched",
}

local function opens(c)
  return (c.name == "+sdown" and c.instance == "master") or c.name == "+odown" or c.name == "+try-failover"
end

-- status(call) -> "failed" | "retried" | "ok" | "skipped" | "none": what its
-- handlers did, as one word (the color of its mark). A line recorded before
-- handlers were (no `handlers`) is judged by its exit code.
function M.status(c)
  if c.exit ~= nil and c.exit ~= 0 then return "failed" end
  local hs = c.handlers
  for _, h in ipairs(hs or {}) do
    if h.outcome == "failed" then return "failed" end
  end
  if c.retry then return "retried" end
  if hs == nil then return "ok" end
  if #hs == 0 then return "none" end
  for _, h in ipairs(hs) do
    if h.outcome ~= "skipped" then return "ok" end
  end
  return "skipped"
end

local G = {}
G.__index = G

-- new(on_close) -> a grouper: g:add(call) for each call in time order, then
-- g:finish(). on_close(f) gets each failover once it is over (in the order
-- they end; f.n is the order they opened): the grouper keeps none.
-- call: { time (seconds or nil), sentinel (label), name, pod, instance (the
-- instance type: "master", "slave", "sentinel" or nil), master ("ip:port" the
-- event names the master at), from and to ("ip:port", +switch-master's), ...}
-- (the rest is kept as is).
function M.new(on_close)
  local g = { on_close = on_close, opened = 0, open = {}, last = {}, outside = 0, outside_failed = 0 }
  return setmetatable(g, G)
end

-- Seconds from a to b; 0 when either is unknown (a line with no time).
local function gap(a, b)
  return math.type(a) and math.type(b) and b - a or 0
end

-- Is f's story over by the time of call c?
local function over(f, c)
  if gap(f.last_time, c.time) > M.IDLE then return true end
  return f.ended ~= nil and (gap(f.ended, c.time) > M.TAIL or (opens(c) and c.master ~= f.from))
end

local function new_failover(g, c)
  g.opened = g.opened + 1
  local f = { n = g.opened, pod = c.pod, start = c.time, calls = {}, sentinels = {}, seen = {}, phases = {},
              running = {}, failed = 0, retries = 0 }
  g.open[c.pod] = f
  return f
end

-- The open failover a call with no master in it belongs to, or nil.
local function for_podless(g, c)
  local f = g.last[c.sentinel or ""]
  if f and g.open[f.pod] == f and not f.ended then return f end
  local only
  for _, o in pairs(g.open) do
    if not o.ended then
      if only then return nil end
      only = o
    end
  end
  return only
end

-- Does call c end failover f (see the rule at the top)?
local function ends(f, c)
  local n = c.name
  return n == "+failover-end" or (n == "-odown" and next(f.running) == nil)
    or (n == "-sdown" and c.instance == "master" and not f.odown)
end

local ABORT = { ["-failover-abort-not-elected"] = true, ["-failover-abort-no-good-slave"] = true,
                ["-failover-abort-slave-timeout"] = true }

local function add_to(g, f, c)
  f.calls[#f.calls + 1] = c
  local s = c.sentinel or "-" -- a line that does not say (the corpus)
  if not f.seen[s] then
    f.seen[s] = true
    f.sentinels[#f.sentinels + 1] = s
  end
  f.start = f.start or c.time
  f.last_time = c.time or f.last_time
  g.last[c.sentinel or ""] = f
  local n = c.name
  if n == "+try-failover" then f.running[s] = true end
  if ABORT[n] then
    f.running[s] = nil
    f.aborted = (f.aborted or 0) + 1
  end
  if n == "+elected-leader" then f.leader = f.leader or c.sentinel end
  if n == "+switch-master" and not f.to then f.from, f.to = c.from, c.to end
  local phase = PHASE_OF[n] or (n == "+sdown" and c.instance == "master" and "down")
  if phase and not f.phases[phase] then f.phases[phase] = c end
  if n == "+odown" then f.odown = true end
  if not f.ended and ends(f, c) then
    f.ended, f.ended_by, f.phases.ended = c.time or f.last_time or true, n, c
    if n == "+failover-end" then f.running[s] = nil end
  end
  local st = M.status(c)
  if st == "failed" then f.failed = f.failed + 1 end
  if c.retry then f.retries = f.retries + 1 end
end

function G:add(c)
  local f
  if c.pod then
    f = self.open[c.pod]
    if f and over(f, c) then
      self:close(f)
      f = nil
    end
    if not f and opens(c) then f = new_failover(self, c) end
  else
    f = for_podless(self, c)
  end
  if not f then
    self.outside = self.outside + 1
    if M.status(c) == "failed" then self.outside_failed = self.outside_failed + 1 end
    return nil
  end
  add_to(self, f, c)
  return f
end

function G:close(f)
  self.open[f.pod] = nil
  f.seen, f.running = nil, nil
  self.on_close(f)
end

-- finish() -> calls outside any failover, of them failed; the failovers
-- still open are over.
-- A failover: { n, pod, start, ended, ended_by, last_time, calls, sentinels,
-- phases = { down = call, elected = call, ... }, leader, from, to, failed,
-- retries, aborted }; ended is true for a failover of calls with no time.
function G:finish()
  local left = {}
  for _, f in pairs(self.open) do left[#left + 1] = f end
  table.sort(left, function(a, b) return a.n < b.n end)
  for _, f in ipairs(left) do self:close(f) end
  return self.outside, self.outside_failed
end

return M
