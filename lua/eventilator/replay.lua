-- eventilator.replay: recorded Sentinel calls, run again through the config
-- and rules (`eventilator test --replay FILE [--run] [--json] [--sentinel ID]`,
-- contract section 14, docs/testing-rules.md).
--
-- A call file holds one JSON object a line: what `record` writes
--   {"argv0":"eventilator","args":[...],"time":1795600000.123,"sentinel":"pid:1234","exit":0}
-- or a corpus line {"scenario":"...","argv0":"...","args":[...]}. Every call goes
-- through the host's own parser, matching and handler runs (the `host` table
-- of src/cli/cli.c), each call with a budget of its own, as a real call has.
--
-- dedupe.once: each recorded Sentinel claims as the owner it had when it was
-- called (this host and the Sentinel's pid), so the first Sentinel of the file
-- acts and the others skip, as they did live; a claim still in the store from
-- the live run is recognised by the same Sentinel. A line without "sentinel"
-- counts as a Sentinel of its own.
local M = {}

-- Fields a line may carry; anything else is reported (the call still replays).
local KNOWN = { argv0 = true, args = true, time = true, sentinel = true, exit = true, scenario = true,
  handlers = true, retry = true } -- what the recorded call's handlers did (contract section 15)

-- The recorder writes a byte that is not valid UTF-8 as \u00XX (XX >= 80);
-- turn those back into the byte before decoding, so the call replays byte
-- for byte. An even run of backslashes before `u` is an escaped backslash.
local function raw_bytes(line)
  if not line:find("\\u00[89a-fA-F]") then return line end
  return (line:gsub("(\\+)u00([89a-fA-F]%x)", function(bs, hex)
    if #bs % 2 == 1 then return bs:sub(1, -2) .. string.char(tonumber(hex, 16)) end
  end))
end

local function is_list_of_strings(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n ~= #t then return false end
  for i = 1, n do
    if type(t[i]) ~= "string" then return false end
  end
  return true
end

-- Check one decoded line; returns the call, or nil and why; plus a note
-- about unknown fields.
local function check(v, null)
  if type(v) ~= "table" or (next(v) ~= nil and #v > 0) then return nil, "not a JSON object" end
  for k, x in pairs(v) do
    if x == null then v[k] = nil end
  end
  if type(v.argv0) ~= "string" or v.argv0 == "" then return nil, "\"argv0\" must be a non-empty string" end
  if not is_list_of_strings(v.args) then return nil, "\"args\" must be a list of strings" end
  if v.time ~= nil and type(v.time) ~= "number" then return nil, "\"time\" must be a number" end
  if v.sentinel ~= nil and type(v.sentinel) ~= "string" then return nil, "\"sentinel\" must be a string" end
  if v.exit ~= nil and math.tointeger(v.exit) == nil then return nil, "\"exit\" must be an integer" end
  v.exit = v.exit and math.tointeger(v.exit)
  local unknown = {}
  for k in pairs(v) do
    if not KNOWN[k] then unknown[#unknown + 1] = string.format("%q", tostring(k)) end
  end
  table.sort(unknown)
  local note
  if #unknown > 0 then
    note = "unknown field" .. (#unknown > 1 and "s " or " ") .. table.concat(unknown, ", ") .. " ignored"
  end
  return v, nil, note
end

-- parse_line(line, n, name, last) -> call, or nil and a problem { line, msg,
-- skipped }; or call and a problem that is a note. Line number n of file
-- name; last: it had no newline. (eventilator.history reads with it too.)
local function parse_line(line, n, name, last)
  local cjson = require("cjson")
  local ok, v = pcall(cjson.decode, raw_bytes(line))
  local call, why, note
  if ok then
    call, why, note = check(v, cjson.null)
  else
    why = "not valid JSON (" .. tostring(v):gsub("^.-: ", "") .. ")"
    if last then why = "truncated last line: no newline at its end, and " .. why end
  end
  if not call then
    return nil, { line = n, skipped = true, msg = string.format("%s:%d: %s; line skipped", name, n, why) }
  end
  call.line = n
  return call, note and { line = n, msg = string.format("%s:%d: %s", name, n, note) }
end
M.parse_line = parse_line

-- read(text, name) -> calls, problems
-- calls: { argv0, args, time, sentinel, exit, scenario, line }; problems:
-- { line, msg, skipped } with msg "name:line: ...", one per bad line.
function M.read(text, name)
  local calls, problems = {}, {}
  local n, pos = 0, 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or #text + 1) - 1)
    pos = (nl or #text) + 1
    n = n + 1
    if line:find("%S") then
      local call, problem = parse_line(line, n, name, not nl)
      calls[#calls + 1] = call
      problems[#problems + 1] = problem
    end
  end
  return calls, problems
end

-- The mode a call runs in, from the name it was called by (contract section 1).
local function is_reconfig(argv0)
  local base = argv0:match("([^/]*)$")
  return base == "reconfigurator" or base == "registrator"
end
M.is_reconfig = is_reconfig

-- Does a call belong to the Sentinel `id` ("pid:1234", "1234" or "ip:port")?
function M.from_sentinel(call, id)
  local s = call.sentinel
  return s ~= nil and (s == id or s == "pid:" .. id)
end

-- The dedupe owner a call's Sentinel had: this host and the Sentinel's pid
-- for a script call (what dedupe.owner() returns there), the id otherwise.
local function owner_of(call, here)
  if call.sentinel then return here .. ":" .. (call.sentinel:match("^pid:(.+)$") or call.sentinel) end
  return "replay:line" .. call.line
end

-- Sentinel re-runs a call that exited 1, from the same process with the same
-- arguments, no sooner than script-retry-delay after it, and the retry skips
-- the handlers that already succeeded (src/core/delivery.c). A replay does the same
-- for such calls in the file: an identical call within script_retry_delay of
-- a failed one is a repeat (a new event), with its own record.
local RETRY_WINDOW = 5 * 3600 -- seconds, as EVL_RETRY_WINDOW in src/core/delivery.h

-- The first pending record of key that call c can be the retry of (removed), or nil.
local function take_record(pending, c)
  local delay = require("eventilator.config").script_retry_delay or 30
  for i, rec in ipairs(pending or {}) do
    local age = c.time and rec.time and c.time - rec.time
    if not age or (age >= delay and age <= RETRY_WINDOW) then return table.remove(pending, i) end
  end
end

local function retry_key(c)
  if not c.sentinel then return nil end
  return c.sentinel .. "\0" .. c.argv0 .. "\0" .. table.concat(c.args, "\0")
end

-- An empty list that encodes as [] (cli.encode) rather than {}.
local function list()
  return setmetatable({}, require("eventilator.cli").array)
end

-- call(host, c, opts, files_failed) -> result
-- result: { argv0, args, sentinel, line, ev, exit, error, handlers = { { rule,
-- file, line, outcome = "would run" | "ok" | "failed" | "skipped", error, ms } } }
-- opts.run runs the handlers; opts.retries (a table kept across the calls of
-- one replay) lets a retry skip what its failed call did.
function M.call(host, c, opts, files_failed)
  opts = opts or {}
  host.begin_call()
  local r = { argv0 = c.argv0, args = c.args, sentinel = c.sentinel, line = c.line, handlers = list() }
  local ev, err = host.parse(c.args, is_reconfig(c.argv0))
  if not ev then
    r.exit, r.error = 2, err
    return r
  end
  if c.time then ev.time = c.time end
  if c.sentinel and not c.sentinel:find("^pid:") then
    ev.source, ev.sentinel, ev.sentinels = "watch", c.sentinel, { c.sentinel } -- recorded in watch mode
  end
  r.ev = ev
  local matched = host.match(ev.name)
  if not opts.run then
    for i, h in ipairs(matched) do
      r.handlers[i] = { rule = h.file .. ":" .. h.line, file = h.file, line = h.line, outcome = "would run" }
    end
    r.exit = 0
    return r
  end
  local key = opts.retries and retry_key(c)
  local done = key and take_record(opts.retries[key], c)
  local torun = {}
  for _, h in ipairs(matched) do
    if not (done and done.ok[h.file .. ":" .. h.line]) then torun[#torun + 1] = h end
  end
  local dedupe = require("eventilator.dedupe")
  local own = dedupe.owner
  local here = own():match("^(.*):[^:]*$") or "localhost"
  dedupe.owner = function() return owner_of(c, here) end
  local ok, ran, failed = pcall(host.run, torun, ev)
  dedupe.owner = own
  if not ok then error(ran, 0) end
  local oks = {}
  for id in pairs(done and done.ok or {}) do oks[id] = true end
  for i, h in ipairs(matched) do
    local id = h.file .. ":" .. h.line
    local skipped = done and done.ok[id]
    r.handlers[i] = { rule = id, file = h.file, line = h.line, ms = not skipped and h.ms or nil,
      outcome = skipped and "skipped" or (h.ok and "ok" or "failed"), error = not skipped and h.err or nil }
    if h.ok then oks[id] = true end
  end
  r.exit = (failed > 0 or (files_failed or 0) > 0) and 1 or 0
  if key and r.exit == 1 then -- this call's record, for its retry
    opts.retries[key] = opts.retries[key] or {}
    table.insert(opts.retries[key], { ok = oks, time = c.time })
  end
  return r
end

-- run(host, calls, opts) -> results (opts.run, opts.sentinel); the config
-- and rules must be loaded.
function M.run(host, calls, opts, files_failed)
  opts = opts or {}
  opts.retries = opts.retries or {}
  local results = {}
  for _, c in ipairs(calls) do
    if not opts.sentinel or M.from_sentinel(c, opts.sentinel) then
      results[#results + 1] = M.call(host, c, opts, files_failed)
    end
  end
  return results
end

local function quote_args(args)
  local q = {}
  for i, a in ipairs(args) do
    q[i] = a:find("^[%w%p]+$") and not a:find("[\"'\\]") and a or string.format("%q", a)
  end
  return table.concat(q, " ")
end

local function short(file)
  return file:match("([^/]*)$")
end

local function print_text(results, run)
  local w = io.stdout
  for _, r in ipairs(results) do
    w:write(string.format("line %d  %s %s%s\n", r.line, r.argv0, quote_args(r.args),
      r.sentinel and ("  [" .. r.sentinel .. "]") or ""))
    if r.error then w:write("  not parsed: ", r.error, "  (a real call exits 2)\n") end
    for _, h in ipairs(r.handlers) do
      if h.outcome == "failed" then
        w:write(string.format("  FAILED     %s:%d  %s\n", short(h.file), h.line,
          (tostring(h.error):gsub("\n.*", ""))))
      else
        w:write(string.format("  %-10s %s:%d%s\n", h.outcome, short(h.file), h.line,
          h.ms and string.format("  %.1f ms", h.ms) or ""))
      end
    end
    if run and not r.error then w:write(string.format("  exit %d\n", r.exit)) end
  end
end

-- The JSON element of contract section 14 for a result.
local function json_result(r)
  local hs = list()
  for i, h in ipairs(r.handlers) do
    hs[i] = { rule = h.rule, outcome = h.outcome, error = h.error }
  end
  local args = list()
  for i, a in ipairs(r.args) do args[i] = a end
  return { argv0 = r.argv0, args = args, handlers = hs, exit = r.exit, error = r.error,
           sentinel = r.sentinel, line = r.line }
end

-- main(host, opts) -> exit code: `eventilator test --replay FILE ...`.
-- opts: file, run, json, sentinel. A recording may be as large as record_max
-- lets it grow: it is read a line at a time and each call printed as it ends,
-- so memory stays that of one call (and the retry records still pending).
function M.main(host, opts)
  local f, ferr = io.open(opts.file, "rb")
  if not f then
    io.stderr:write("eventilator test --replay: ", ferr, "\n")
    return 2
  end
  local config, _, _, problems = host.load_config()
  if not config then
    f:close()
    return 2
  end
  -- what makes every real call exit 1: a rule file that fails, a top-level setting with an error
  local files_failed = 0
  for _, p in ipairs(problems) do
    io.stderr:write("config ", p.msg, "\n")
    if p.kind == "setting" then files_failed = files_failed + 1 end
  end
  for _, file in ipairs(host.load_rules()) do
    if not file.ok then files_failed = files_failed + 1 end
  end
  opts.retries = opts.retries or {}
  local encode = require("eventilator.cli").encode
  local n, replayed, bad, failed, code = 0, 0, 0, 0, 0
  for line in f:lines("L") do
    n = n + 1
    local last = line:sub(-1) ~= "\n"
    line = last and line or line:sub(1, -2)
    if line:find("%S") then
      local c, problem = parse_line(line, n, opts.file, last)
      if problem then io.stderr:write(problem.msg, "\n") end
      if problem and problem.skipped then bad = bad + 1 end
      if c and (not opts.sentinel or M.from_sentinel(c, opts.sentinel)) then
        local r = M.call(host, c, opts, files_failed)
        replayed = replayed + 1
        if opts.json then
          io.stdout:write(replayed == 1 and "[\n  " or ",\n  ", encode(json_result(r), "  "))
        else
          print_text({ r }, opts.run)
        end
        if r.exit ~= 0 then failed = failed + 1 end
        if r.exit > code then code = r.exit end
      end
    end
  end
  f:close()
  if opts.json then io.stdout:write(replayed == 0 and "[]\n" or "\n]\n") end
  if bad > 0 then code = 2 end
  io.stderr:write(string.format("%d call(s) replayed%s, %d bad line(s), %d call(s) %s\n", replayed,
    opts.sentinel and (" from Sentinel " .. opts.sentinel) or "", bad, failed,
    opts.run and "would not exit 0" or "not parsed"))
  return code
end

return M
