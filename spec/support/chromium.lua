-- Debian's Chromium, headless, for the specs of `history --html`: the DOM
-- it rendered from a file, and a screenshot. No network (the flags keep it
-- from calling home: this machine refuses such connections), a fresh
-- profile each time, and a time limit, so a spec always ends.
local procs = require("procs")

local M = {}

local FLAGS = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
  .. " --disable-component-update --disable-sync --disable-default-apps --mute-audio"

function M.available()
  local _, rc = procs.sh("command -v chromium >/dev/null")
  return rc == 0
end

local function run(args, page)
  local profile = procs.tmpdir()
  local out, rc = procs.sh(string.format("env -u LD_PRELOAD timeout 120 chromium %s --user-data-dir=%s %s %s 2>%s",
    FLAGS, procs.quote(profile), args, procs.quote("file://" .. page), procs.quote(profile .. ".err")))
  local err = procs.read(profile .. ".err") or ""
  os.remove(profile .. ".err")
  procs.rmtree(profile)
  assert(rc == 0, "chromium exited " .. tostring(rc) .. ": " .. err)
  return out
end

-- dom(page) -> the serialized DOM after the page rendered.
function M.dom(page)
  return run("--dump-dom", page)
end

-- screenshot(page, png) -> png (1200 x 800).
function M.screenshot(page, png)
  run("--screenshot=" .. procs.quote(png) .. " --window-size=1200,800 --hide-scrollbars", page)
  return png
end

-- colors(png, { "2e9d4f", ... }) -> how many distinct colors the PNG holds,
-- its width and height, and { [hex] = pixels of that color }
-- (spec/support/pngcolors.py: no imaging library needed).
function M.colors(png, wanted)
  wanted = wanted or {}
  local out = procs.sh(string.format("env -u LD_PRELOAD python3 %s %s %s 2>&1",
    procs.quote(procs.src .. "/spec/support/pngcolors.py"), procs.quote(png), table.concat(wanted, " ")))
  local nums = {}
  for d in out:gmatch("%d+") do nums[#nums + 1] = tonumber(d) end
  assert(#nums == 3 + #wanted, "could not read " .. png .. ": " .. tostring(out))
  local pixels = {}
  for i, hex in ipairs(wanted) do pixels[hex] = nums[3 + i] end
  return nums[1], nums[2], nums[3], pixels
end

-- count(dom, pattern) -> how many times a plain string occurs in the DOM.
function M.count(dom, s)
  local n, i = 0, 1
  while true do
    local _, e = dom:find(s, i, true)
    if not e then return n end
    n, i = n + 1, e + 1
  end
end

return M
