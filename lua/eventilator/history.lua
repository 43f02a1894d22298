-- eventilator history: what ran, on which Sentinel, and what failed, one
-- failover at a time (contract section 15, docs/history.md).
--
--   eventilator history [--file [HOST=]F]... [--pod NAME] [--since 2h] [--failed] [--json] [--html FILE]
--
-- Reads the recorded calls (`record`, contract section 14: by default
-- <record>.1 then <record> of the config, so a failover that straddles the
-- rotation is whole), line by line through replay's parser, each call's
-- event through the host's own parser (its pod), merges the files by time
-- and groups the calls into failovers (eventilator.failovers). Exit 0; 1
-- when --failed found failed or retried work; 2 when a file cannot be read.
local replay = require("eventilator.replay")
local failovers = require("eventilator.failovers")

local M = {}

local USAGE = "usage: eventilator history [--file [HOST=]FILE]... [--pod NAME] [--since DURATION]"
  .. " [--failed] [--json] [--html FILE]\n"

local function fail(msg)
  io.stderr:write("eventilator history: ", msg, "\n")
  return 2
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The host a file was recorded on, for its Sentinels' labels: HOST=PATH
-- says it; else the file's name without .1 and .jsonl (hostB.jsonl: hostB),
-- or the name of its folder when that is the default calls.jsonl.
local function source(spec)
  local host, path = spec:match("^([^/=]+)=(.+)$")
  if not host or exists(spec) then
    path = spec
    local dir, base = spec:match("^(.-)([^/]*)$")
    base = base:gsub("%.1$", ""):gsub("%.jsonl?$", "")
    if base == "calls" or base == "" then
      base = dir:gsub("/+$", ""):match("([^/]*)$")
    end
    host = base ~= "" and base or spec
  end
  return { path = path, host = host }
end

local function options(args)
  local o = { files = {} }
  local i = 2
  local VALUE = { ["--file"] = true, ["--pod"] = true, ["--since"] = true, ["--html"] = true }
  while i <= #args do
    local a = args[i]
    if VALUE[a] then
      local v = args[i + 1]
      if v == nil or v == "" then return nil, a .. " needs a value" end
      if a == "--file" then
        o.files[#o.files + 1] = source(v)
      elseif a == "--since" then
        local secs, err = require("eventilator.duration").parse(v)
        if not secs then return nil, "--since: " .. err end
        o.since = secs
      else
        o[a:sub(3)] = v
      end
      i = i + 2
    elseif a == "--failed" or a == "--json" then
      o[a:sub(3)] = true
      i = i + 1
    else
      return nil, "unknown option " .. string.format("%q", a)
    end
  end
  return o
end

-- The default files: the config's record (and its rotation, read first).
local function default_files(host)
  local config = host.load_config()
  if not config then return nil end
  local rec = config.record
  if rec == false or rec == "" then
    return nil, "record = false in the config: nothing was recorded here (use --file)"
  end
  if type(rec) ~= "string" then rec = (config.state_dir or ".") .. "/calls.jsonl" end
  local files = {}
  for _, p in ipairs({ rec .. ".1", rec }) do
    if exists(p) then files[#files + 1] = { path = p, host = "" } end
  end
  return files, rec
end

local function addr(t)
  return t and t.ip and t.port and (t.ip .. ":" .. t.port) or nil
end

-- One recorded call, as grouping and printing need it (and nothing more).
local function compact(host, c, label)
  local reconfig = replay.is_reconfig(c.argv0)
  local ev = host.parse(c.args, reconfig)
  local call = { time = c.time, sentinel = label, exit = c.exit, retry = c.retry == true or nil,
                 handlers = type(c.handlers) == "table" and c.handlers or nil }
  if ev then
    call.name, call.pod = ev.name, ev.pod
    call.instance = ev.instance and ev.instance.type
    call.master = addr(ev.instance and ev.instance.type == "master" and ev.instance or ev.master)
    if ev.name == "+switch-master" then call.from, call.to = addr(ev.old_master), addr(ev.new_master) end
  else
    call.name = reconfig and "client-reconfig" or (c.args[1] or c.argv0)
  end
  call.text = reconfig and table.concat(c.args, " ") or (c.args[2] or "")
  return call
end

-- read(host, files, label_hosts) -> calls in time order | nil, message
-- A line with no time keeps its place after the line before it.
local function read(host, files, label_hosts)
  local calls, bad = {}, 0
  for fi, src in ipairs(files) do
    local f, err = io.open(src.path, "rb")
    if not f then return nil, err end
    local n, at = 0, 0
    for line in f:lines("L") do
      n = n + 1
      local last = line:sub(-1) ~= "\n"
      if not last then line = line:sub(1, -2) end
      if line:find("%S") then
        local c, problem = replay.parse_line(line, n, src.path, last)
        if problem and problem.skipped then
          io.stderr:write(problem.msg, "\n")
          bad = bad + 1
        end
        if c then
          local label = c.sentinel
          if label and label_hosts and label:find("^pid:") then label = src.host .. " " .. label end
          local call = compact(host, c, label)
          at = c.time or at
          call.key, call.file, call.seq = at, fi, n
          calls[#calls + 1] = call
        end
      end
    end
    f:close()
  end
  table.sort(calls, function(a, b)
    if a.key ~= b.key then return a.key < b.key end
    if a.file ~= b.file then return a.file < b.file end
    return a.seq < b.seq
  end)
  return calls, bad
end

-- Should failover f be shown under the options?
local function wanted(f, o, now)
  if o.pod and f.pod ~= o.pod then return false end
  if o.since and (f.last_time or 0) < now - o.since then return false end
  if o.failed and f.failed == 0 and f.retries == 0 then return false end
  return true
end

function M.main(args, host)
  local o, err = options(args)
  if not o then
    io.stderr:write("eventilator history: ", err, "\n", USAGE)
    return 2
  end
  local files = o.files
  if #files == 0 then
    local rec
    files, rec = default_files(host)
    if not files then return rec and fail(rec) or 2 end
    if #files == 0 then
      io.stderr:write("eventilator history: no calls recorded yet (", rec, " does not exist)\n")
      return 0
    end
  end
  -- several hosts: a Sentinel's pid says nothing without its host
  local hosts = {}
  for _, f in ipairs(files) do hosts[f.host] = true end
  local label_hosts = next(hosts, next(hosts)) ~= nil
  local calls, bad = read(host, files, label_hosts)
  if not calls then return fail(bad) end
  local g = failovers.new()
  for _, c in ipairs(calls) do g:add(c) end
  local all, outside, outside_failed = g:finish()
  local shown, now = {}, os.time()
  for _, f in ipairs(all) do
    if wanted(f, o, now) then shown[#shown + 1] = f end
  end
  local view = require("eventilator.history_view")
  if o.html then
    local page = require("eventilator.history_html").page(shown, { files = files })
    local out, werr = io.open(o.html, "wb")
    if not out then return fail(werr) end
    out:write(page)
    out:close()
    io.stderr:write(string.format("eventilator history: %s: %d failover(s)\n", o.html, #shown))
  end
  if o.json then
    io.stdout:write(view.json(shown), "\n")
  elseif not o.html then
    view.text(io.stdout, shown, { outside = outside, outside_failed = outside_failed, bad = bad,
                                  total = #all, filtered = o.pod or o.since or o.failed })
  end
  return (o.failed and #shown > 0) and 1 or 0
end

return M
