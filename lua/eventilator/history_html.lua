-- eventilator.history_html: `eventilator history --html FILE`, one page
-- that needs nothing else: inline CSS, positioned divs, no script, and a
-- Content-Security-Policy that forbids the browser any load at all. Each
-- failover is a section with a lane per Sentinel, a mark per call placed by
-- its time and colored by what its handlers did, the phases (down, elected,
-- promoted, switched, ended) as labelled lines, and the whole text of a mark
-- in its title (shown on hover). Every string from a recording is escaped:
-- a master name or a description is whatever reached Sentinel.
local failovers = require("eventilator.failovers")
local view = require("eventilator.history_view")

local M = {}

local TRACK = 960 -- px: the time axis
local MARK = 10 -- px: a mark's width, and the least room between two in one row
local ROW = 18 -- px: a lane's row (calls too close in time stack in rows)
local ROWS = 4 -- rows a lane may grow to; past that, marks overlap
local QUIET = 5 -- s: a longer quiet time is drawn GAP long, with its real length written on it
local GAP = 2

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
              ["\n"] = "&#10;" }

-- Text for an HTML element or a quoted attribute.
local function esc(s)
  return (tostring(s):gsub("[&<>\"'\n]", ESC))
end
M.escape = esc

local CSS = [[
body { font: 13px/1.4 sans-serif; color: #222; background: #fff; margin: 16px; }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 2px; }
.legend span.mark { position: static; display: inline-block; vertical-align: middle; margin: 0 4px 0 12px; }
section.failover { border-top: 1px solid #ccc; padding: 12px 0 8px; }
.summary { color: #555; margin: 0 0 8px; }
.timeline { position: relative; padding-top: 36px; }
.lane { display: flex; border-bottom: 1px solid #eee; }
.lane .label { width: 150px; flex: none; padding: 2px 8px 0 0; text-align: right; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; font-family: monospace; }
.track { position: relative; flex: none; }
.mark { position: absolute; width: 10px; height: 14px; border-radius: 3px; box-sizing: border-box;
  border: 1px solid rgba(0, 0, 0, .35); }
.mark:hover { outline: 2px solid #000; z-index: 2; }
.ok { background: #2e9d4f; } .failed { background: #d93025; } .retried { background: #f29900; }
.skipped { background: #8aa4c8; } .none { background: #d0d0d0; }
.phase { position: absolute; top: 0; bottom: 0; border-left: 1px dashed #777; pointer-events: none; }
.phase span { position: absolute; left: 3px; font-size: 11px; color: #444; white-space: nowrap; }
.break { position: absolute; top: 0; bottom: 0; width: 8px; margin-left: -4px; pointer-events: none;
  background: repeating-linear-gradient(45deg, #f4f4f4 0 3px, #ddd 3px 5px); }
.break span { position: absolute; bottom: -16px; left: -12px; font-size: 10px; color: #777;
  white-space: nowrap; }
.axis { position: relative; height: 18px; margin-left: 158px; font-size: 10px; color: #777; }
.axis span { position: absolute; }
]]

local LEGEND = { { "ok", "all handlers ok" }, { "failed", "a handler failed" }, { "retried", "a retry" },
                 { "skipped", "all skipped" }, { "none", "no handler ran" } }

-- x(t) for a failover: time to px, with every quiet time longer than QUIET
-- drawn GAP long (a retry 30 s after a 3 s failover would squeeze the rest);
-- returns x, and the breaks { at = px, len = seconds }. A call with no time
-- takes the next step after the call before it.
local function scale(f)
  local xs, breaks, v, prev = {}, {}, 0, nil
  for i, c in ipairs(f.calls) do
    local t = math.type(c.time) and c.time or nil
    local dt = 0
    if i > 1 then dt = (t and prev) and t - prev or 0.1 end
    if dt > QUIET then
      breaks[#breaks + 1] = { v = v + GAP / 2, len = dt }
      dt = GAP
    end
    v = v + math.max(dt, 0)
    xs[i] = v
    prev = t or prev
  end
  local unit = (TRACK - MARK) / math.max(v, 0.001)
  for i, x in ipairs(xs) do xs[i] = x * unit end
  for _, b in ipairs(breaks) do b.x = b.v * unit end
  return xs, breaks
end

local function ms(h)
  return math.type(h.ms) and string.format(" %.1f ms", h.ms) or ""
end

-- The whole text of a call, for its title.
local function hover(f, c)
  local lines = {}
  local off = math.type(c.time) and math.type(f.start) and c.time - f.start
  lines[1] = string.format("%s%s  %s", off and string.format("%+.2f s", off) or "?",
    math.type(c.time) and os.date("  %Y-%m-%d %H:%M:%S", math.floor(c.time))
      .. string.format(".%03d", math.floor((c.time % 1) * 1000)) or "", c.sentinel or "Sentinel not recorded")
  lines[2] = c.name .. " " .. c.text
  if c.retry then lines[#lines + 1] = "retry of a failed call" end
  if c.handlers == nil then lines[#lines + 1] = "handlers not recorded" end
  if c.handlers and #c.handlers == 0 then lines[#lines + 1] = "no handler" end
  for _, h in ipairs(c.handlers or {}) do
    lines[#lines + 1] = string.format("%s %s%s%s", tostring(h.rule), tostring(h.outcome), ms(h),
      h.error and (": " .. tostring(h.error)) or "")
  end
  if c.exit and c.exit ~= 0 then lines[#lines + 1] = "exit " .. c.exit end
  return table.concat(lines, "\n")
end

local LEFT = 158 -- px: where a track starts in its lane (the label's width and padding)

local function add(out, fmt, ...)
  out[#out + 1] = string.format(fmt, ...)
end

-- The marks of each Sentinel's lane; calls too close in time on one lane
-- go to the next row down, up to ROWS.
local function lanes(f, xs)
  local index, ls = {}, {}
  for i, s in ipairs(f.sentinels) do
    index[s] = i
    ls[i] = { rows = { -math.huge }, marks = {} }
  end
  for i, c in ipairs(f.calls) do
    local lane = ls[index[c.sentinel or "-"]]
    local row
    for r, last in ipairs(lane.rows) do
      if xs[i] >= last + MARK then
        row = r
        break
      end
    end
    row = row or math.min(#lane.rows + 1, ROWS)
    lane.rows[row] = xs[i]
    add(lane.marks, '<div class="mark %s" style="left:%.0fpx;top:%dpx" title="%s"></div>',
      failovers.status(c), xs[i], 2 + (row - 1) * ROW, esc(hover(f, c)))
  end
  return ls
end

-- The phases' lines, their labels in two rows when close.
local function phases(out, f, xs)
  local index = {}
  for i, c in ipairs(f.calls) do index[c] = i end
  local last_x, level = -math.huge, 0
  for _, p in ipairs(failovers.PHASES) do
    local c = f.phases[p]
    if c then
      local x = xs[index[c]] + MARK / 2 + LEFT
      level = (x - last_x < 90) and (level + 1) % 2 or 0
      last_x = x
      local off = math.type(c.time) and math.type(f.start) and string.format(" %+.2f s", c.time - f.start)
      add(out, '<div class="phase" data-phase="%s" style="left:%.0fpx">', p, x)
      add(out, '<span style="top:%dpx">%s%s</span></div>', level * 14, p, off or "")
    end
  end
end

local function section(out, f)
  local xs, breaks = scale(f)
  local span = view.span(f)
  add(out, '<section class="failover" data-pod="%s">', esc(f.pod))
  add(out, "<h2>%s: %s</h2>", esc(f.pod), esc(view.result(f)))
  add(out, '<p class="summary">%s%s; %d call(s) from %d Sentinel(s)%s; %d failed, %d retried</p>',
    math.type(f.start) and os.date("%Y-%m-%d %H:%M:%S", math.floor(f.start)) or "no times recorded",
    span and string.format(", %.1f s", span) or "", #f.calls, #f.sentinels,
    f.leader and (", leader " .. esc(f.leader)) or "", f.failed, f.retries)
  out[#out + 1] = '<div class="timeline">'
  phases(out, f, xs)
  for _, b in ipairs(breaks) do
    add(out, '<div class="break" style="left:%.0fpx"><span>%.1f s</span></div>', b.x + LEFT + MARK / 2, b.len)
  end
  for i, lane in ipairs(lanes(f, xs)) do
    local s = f.sentinels[i]
    add(out, '<div class="lane" data-sentinel="%s"><div class="label" title="%s">%s</div>', esc(s), esc(s),
      esc(s == "-" and "(not recorded)" or s))
    add(out, '<div class="track" style="width:%dpx;height:%dpx">%s</div></div>', TRACK, #lane.rows * ROW + 2,
      table.concat(lane.marks))
  end
  out[#out + 1] = "</div>"
  local width = math.type(f.start) and math.type(f.last_time) and f.last_time - f.start
  if width then
    add(out, '<div class="axis"><span style="left:0">+0 s</span><span style="left:%dpx">%+.1f s</span></div>',
      TRACK - 40, width)
  end
  out[#out + 1] = "</section>"
end

-- page(shown) -> the page's text.
function M.page(shown)
  local out = {
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    -- nothing may load: no script, no font, no image, no request of any kind
    [[<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">]],
    "<title>eventilator history</title>",
    "<style>" .. CSS .. "</style></head><body>",
    string.format("<h1>eventilator history: %d failover(s)</h1>", #shown),
  }
  local legend = {}
  for i, l in ipairs(LEGEND) do legend[i] = string.format('<span class="mark %s"></span>%s', l[1], l[2]) end
  out[#out + 1] = '<p class="legend">' .. table.concat(legend) .. "</p>"
  out[#out + 1] = '<p class="summary">Hover a mark for what ran.</p>'
  if #shown == 0 then out[#out + 1] = "<p>No failover in the recording.</p>" end
  for _, f in ipairs(shown) do section(out, f) end
  out[#out + 1] = "</body></html>\n"
  return table.concat(out, "\n")
end

return M
