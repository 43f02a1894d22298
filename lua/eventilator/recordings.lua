-- eventilator.recordings: the calls of several record files (one per
-- Sentinel host), merged by time into one stream, for `eventilator history`.
-- Each line goes through replay's parser and its event through the host's
-- own (so a call knows its master); what is kept of a call is what grouping
-- and printing need.
--
-- A file is in the order its calls ended, each line carrying when its call
-- started; no call lasts past Sentinel's 60 s kill. So the files are read
-- side by side and a call is handed on once every file has been read SLACK
-- seconds past it: memory holds that window, not the files. A line with no
-- time (the corpus) keeps its place after the line before it.
local replay = require("eventilator.replay")

local M = {}

M.SLACK = 90 -- seconds: more than a call can last (Sentinel kills a script at 60 s)

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

-- A min-heap of calls by (key, source, seq).
local function before(a, b)
  if a.key ~= b.key then return a.key < b.key end
  if a.src ~= b.src then return a.src < b.src end
  return a.seq < b.seq
end

local function push(h, c)
  h[#h + 1] = c
  local i = #h
  while i > 1 do
    local p = i // 2
    if not before(h[i], h[p]) then break end
    h[i], h[p] = h[p], h[i]
    i = p
  end
end

local function pop(h)
  local top, n = h[1], #h
  h[1] = h[n]
  h[n] = nil -- after: when n is 1 it is the same slot
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and before(h[l], h[m]) then m = l end
    if r <= n and before(h[r], h[m]) then m = r end
    if m == i then break end
    h[i], h[m] = h[m], h[i]
    i = m
  end
  return top
end

-- One source: its paths read one after the other (a record's rotation, then
-- the record). next() -> call or nil at the end.
local function reader(host, src, si, label_hosts, out)
  local files, k, f, n, at = {}, 0, nil, 0, 0
  for i, path in ipairs(src.paths) do
    local h, err = io.open(path, "rb")
    if not h then
      for _, o in ipairs(files) do o:close() end
      return nil, err
    end
    files[i] = h
  end
  local lines
  local r = { time = -math.huge }
  function r.next()
    while true do
      if not lines then
        if f then f:close() end
        k = k + 1
        f = files[k]
        if not f then return nil end
        lines, n = f:lines("L"), 0
      end
      local line = lines()
      if not line then
        lines = nil
      else
        n = n + 1
        local last = line:sub(-1) ~= "\n"
        if not last then line = line:sub(1, -2) end
        if line:find("%S") then
          local c, problem = replay.parse_line(line, n, src.paths[k], last)
          if problem and problem.skipped then
            io.stderr:write(problem.msg, "\n")
            out.bad = out.bad + 1
          end
          if c then
            local label = c.sentinel
            if label and label_hosts and label:find("^pid:") then label = src.host .. " " .. label end
            local call = compact(host, c, label)
            at = c.time or at
            call.key, call.src, call.seq = at, si, k * 2 ^ 40 + n
            r.time = at
            return call
          end
        end
      end
    end
  end
  return r
end

-- each(host, sources, label_hosts, fn) -> bad lines | nil, message
-- sources: { { paths = { ... }, host = "hostB" } }; fn(call) for every call,
-- in time order. label_hosts: a pid Sentinel is named "<host> pid:N".
function M.each(host, sources, label_hosts, fn)
  local out, readers = { bad = 0 }, {}
  for i, src in ipairs(sources) do
    local r, err = reader(host, src, i, label_hosts, out)
    if not r then
      return nil, err
    end
    readers[i] = r
  end
  local heap, live = {}, #readers
  local done = {}
  while live > 0 do
    -- read on in the source that is furthest behind
    local lag
    for i, r in ipairs(readers) do
      if not done[i] and (not lag or r.time < readers[lag].time) then lag = i end
    end
    local c = readers[lag].next()
    if c then
      push(heap, c)
    else
      done[lag], live = true, live - 1
      readers[lag].time = math.huge
    end
    local safe = math.huge
    for i, r in ipairs(readers) do
      if not done[i] then safe = math.min(safe, r.time - M.SLACK) end
    end
    while heap[1] and heap[1].key <= safe do fn(pop(heap)) end
  end
  while heap[1] do fn(pop(heap)) end
  return out.bad
end

return M
