-- eventilator history: what ran, on which Sentinel, and what failed, one
-- failover at a time (contract section 15, docs/history.md).
--
--   eventilator history [--file [HOST=]F]... [--pod NAME] [--since 2h] [--failed] [--json] [--html FILE]
--
-- Reads the recorded calls (`record`, contract section 14: by default
-- <record>.1 then <record> of the config, so a failover that straddles the
-- rotation is whole), merged by time across the files (eventilator.recordings),
-- groups them into failovers (eventilator.failovers) and keeps the ones the
-- options ask for. Exit 0; 1 when --failed found failed or retried work; 2
-- when a file cannot be read.
local failovers = require("eventilator.failovers")

local M = {}

local USAGE = "usage: eventilator history [--file [HOST=]FILE]... [--pod NAME] [--since DURATION]"
  .. " [--failed] [--json] [--html FILE]\n"

local function fail(msg)
  io.stderr:write("eventilator history: ", msg, "\n")
  return 2
end

-- Is there a file at path? One that cannot be read (state_dir is Sentinel's
-- user's alone) is there: reading it says why, rather than "nothing recorded".
local ENOENT = 2
local function exists(path)
  local f, _, errno = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil or errno ~= ENOENT
end

-- The host a file was recorded on, for its Sentinels' labels: HOST=PATH
-- says it; else the file's name without .1 and .jsonl (hostB.jsonl: hostB),
-- or the name of its folder when that is the default calls.jsonl.
local function source(spec)
  local host, path = spec:match("^([^/=]+)=(.+)$")
  if host and not exists(spec) then return { paths = { path }, host = host } end
  local dir, base = spec:match("^(.-)([^/]*)$")
  base = base:gsub("%.1$", ""):gsub("%.jsonl?$", "")
  if base == "calls" or base == "" then
    base = dir:gsub("/+$", ""):match("([^/]*)$")
  end
  return { paths = { spec }, host = base ~= "" and base or spec }
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
  local paths = {}
  for _, p in ipairs({ rec .. ".1", rec }) do
    if exists(p) then paths[#paths + 1] = p end
  end
  return #paths > 0 and { { paths = paths, host = "" } } or {}, rec
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
  local shown, total, now = {}, 0, os.time()
  local g = failovers.new(function(f)
    total = total + 1
    if wanted(f, o, now) then shown[#shown + 1] = f end
  end)
  local bad, rerr = require("eventilator.recordings").each(host, files, label_hosts, function(c) g:add(c) end)
  if not bad then return fail(rerr) end
  local outside, outside_failed = g:finish()
  table.sort(shown, function(a, b) return a.n < b.n end)
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
                                  total = total, filtered = o.pod or o.since or o.failed })
    if #o.files == 0 then -- this host's own record: its store's dead entries too (cluster mode)
      for _, l in ipairs(require("eventilator.cluster").dead_lines()) do io.stdout:write(l, "\n") end
    end
  end
  return (o.failed and #shown > 0) and 1 or 0
end

return M
