-- A watcher's /metrics and /healthz (watch.listen, docs/watch.md) for the
-- specs: fetched with curl, and the exposition checked line by line against
-- Prometheus's text format (version 0.0.4) while it is parsed.
--
--   local url = scrape.url(w)                 -- from the watcher's log
--   local code, body = scrape.get(url .. "/healthz")
--   local m = scrape.metrics(url)             -- parsed and checked, or raises
--   scrape.value(m, "eventilator_runs_total", { event = "+sdown", outcome = "ok" })
local procs = require("procs")

local M = {}

-- The address the watcher serves, as its log says it last (port 0 is the kernel's choice).
function M.url(w)
  local url
  for u in w:logtext():gmatch("serving /metrics and /healthz on (http://%S+)") do url = u end
  return url
end

-- Until the log names an address n times; returns the last.
function M.wait_url(w, n, timeout)
  procs.wait(function() return w:log_count("serving /metrics and /healthz on") >= (n or 1) end, timeout or 20,
    "the watcher serving /metrics")
  return M.url(w)
end

-- GET url: status (nil when nothing answered), body, content type.
function M.get(url, timeout)
  local out = procs.sh(string.format("env -u LD_PRELOAD curl -s -g --max-time %d -o - -w '\\n%%{http_code} %%{content_type}' %s",
    timeout or 5, procs.quote(url)))
  local body, code, ctype = out:match("^(.*)\n(%d+) ?(.-)%s*$")
  code = tonumber(code)
  return code ~= 0 and code or nil, body, ctype
end

-- ---------------------------------------------------------------- the format

local NAME = "^[%a_:][%w_:]*"
local LABEL = "^[%a_][%w_]*"
local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

-- {a="x",b="y"} at s[i]: the labels and the index after "}"; raises on anything the format forbids.
local function labels(s, i, where)
  local out = {}
  i = i + 1
  if s:sub(i, i) == "}" then return out, i + 1 end
  while true do
    local name = s:match(LABEL, i)
    assert(name, where .. ": a label name expected at column " .. i)
    i = i + #name
    assert(s:sub(i, i + 1) == '="', where .. ": =\" expected after label " .. name)
    i = i + 2
    local v = {}
    while true do
      local ch = s:sub(i, i)
      assert(ch ~= "" and ch ~= "\n", where .. ": label value of " .. name .. " not closed")
      if ch == "\\" then
        local e = s:sub(i + 1, i + 1)
        assert(e == "\\" or e == '"' or e == "n", where .. ": escape \\" .. e .. " in a label value")
        v[#v + 1] = e == "n" and "\n" or e
        i = i + 2
      elseif ch == '"' then
        i = i + 1
        break
      else
        v[#v + 1] = ch
        i = i + 1
      end
    end
    assert(out[name] == nil, where .. ": label " .. name .. " twice")
    out[name] = table.concat(v)
    local ch = s:sub(i, i)
    if ch == "}" then return out, i + 1 end
    assert(ch == ",", where .. ": , or } expected at column " .. i)
    i = i + 1
  end
end

local function number(s)
  if s == "+Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  if s == "NaN" then return 0 / 0 end
  return s:match("^[-+]?[%d.]+[eE]?[-+]?%d*$") and tonumber(s)
end

-- The family a sample belongs to: its own name, or a histogram's _bucket/_sum/_count.
local function family_of(name, types)
  if types[name] then return name end
  local base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$") or name:match("^(.*)_count$")
  if base and (types[base] == "histogram" or types[base] == "summary") then return base end
end

local function key(l, skip)
  local k = {}
  for n, v in pairs(l) do
    if n ~= skip then k[#k + 1] = n .. "=" .. v end
  end
  table.sort(k)
  return table.concat(k, ",")
end

-- Each histogram series: buckets by increasing le, counts that never fall, +Inf equal to _count.
local function check_histograms(samples, types)
  local series = {}
  for _, s in ipairs(samples) do
    local fam = family_of(s.name, types)
    if types[fam] == "histogram" then
      local k = fam .. "{" .. key(s.labels, "le") .. "}"
      series[k] = series[k] or { buckets = {} }
      if s.name == fam .. "_bucket" then
        assert(s.labels.le, k .. ": a bucket without le")
        table.insert(series[k].buckets, { le = number(s.labels.le), n = s.value })
      elseif s.name == fam .. "_count" then
        series[k].count = s.value
      else
        series[k].sum = s.value
      end
    end
  end
  for k, h in pairs(series) do
    assert(h.count and h.sum, k .. ": _sum and _count")
    for i = 2, #h.buckets do
      assert(h.buckets[i].le > h.buckets[i - 1].le, k .. ": le not increasing")
      assert(h.buckets[i].n >= h.buckets[i - 1].n, k .. ": bucket counts fall")
    end
    local last = h.buckets[#h.buckets]
    assert(last and last.le == math.huge, k .. ": no +Inf bucket")
    assert(last.n == h.count, k .. ": +Inf bucket is not _count")
  end
end

-- Parse an exposition, checking every line; returns its samples { name, labels, value }.
function M.parse(text)
  assert(type(text) == "string" and text ~= "", "no exposition")
  assert(text:sub(-1) == "\n", "the exposition does not end with a newline")
  assert(utf8.len(text), "the exposition is not UTF-8")
  local types, helps, samples, n = {}, {}, {}, 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local where = "line " .. n .. " (" .. line .. ")"
    if line:sub(1, 1) == "#" then
      local kind, name, rest = line:match("^# (%u+) ([%a_:][%w_:]*) ?(.*)$")
      if kind == "HELP" then
        assert(not helps[name], where .. ": HELP twice")
        helps[name] = rest
      elseif kind == "TYPE" then
        assert(TYPES[rest] and not types[name], where .. ": a TYPE once, of a known type")
        types[name] = rest
      end
      assert(line:match("^# [^\n]*$"), where)
    else
      local name = line:match(NAME)
      assert(name, where .. ": not a sample")
      local l, i = {}, #name + 1
      if line:sub(i, i) == "{" then l, i = labels(line, i, where) end
      local v = line:sub(i):match("^ (%S+)$")
      assert(v and number(v), where .. ": a value expected after one space")
      local fam = family_of(name, types)
      assert(fam, where .. ": no TYPE line before it")
      assert(helps[fam], where .. ": no HELP line for " .. fam)
      samples[#samples + 1] = { name = name, labels = l, value = number(v), family = fam }
    end
  end
  check_histograms(samples, types)
  return samples, types
end

-- GET /metrics, checked and parsed (raises with the text when it does not parse).
function M.metrics(url)
  local code, body, ctype = M.get(url .. "/metrics")
  assert(code == 200, "GET /metrics: " .. tostring(code))
  assert(ctype:find("text/plain; version=0.0.4", 1, true), "content type " .. tostring(ctype))
  local ok, samples = pcall(M.parse, body)
  assert(ok, tostring(samples) .. "\n" .. body)
  return samples, body
end

local function matches(s, name, want)
  if s.name ~= name then return false end
  for k, v in pairs(want or {}) do
    if s.labels[k] ~= v then return false end
  end
  return true
end

-- The value of the one sample named `name` whose labels include `want`, or nil.
function M.value(samples, name, want)
  local found
  for _, s in ipairs(samples) do
    if matches(s, name, want) then
      assert(found == nil, "more than one sample of " .. name)
      found = s.value
    end
  end
  return found
end

-- Every sample named `name` whose labels include `want`.
function M.all(samples, name, want)
  local out = {}
  for _, s in ipairs(samples) do
    if matches(s, name, want) then out[#out + 1] = s end
  end
  return out
end

return M
