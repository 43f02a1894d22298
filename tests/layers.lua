-- The include graph of src/, checked (CTest `layers`; docs/design.md, "Layers"):
--
--   1. no file of a lower layer includes a header of a higher one
--      (core < bindings < watch < cli; CMake's include paths refuse it too);
--   2. no two modules include each other, directly or in a circle (a module:
--      x.c and x.h of one folder; "a includes b" means a file of a includes b.h).
--
--   lua5.4 tests/layers.lua SRC_DIR   -> a summary; exit 1 with every violation
local src = arg[1] or "src"
local RANK = { core = 1, bindings = 2, watch = 3, cli = 4 }
local ORDER = { "core", "bindings", "watch", "cli" }

local function lines(path)
  local f = assert(io.open(path, "rb"))
  local t = f:read("a")
  f:close()
  return t
end

-- every .c and .h of the layers, by folder
local header_at, files = {}, {}
for _, layer in ipairs(ORDER) do
  local p = assert(io.popen("ls " .. src .. "/" .. layer))
  for name in p:lines() do
    if name:match("%.[ch]$") then
      files[#files + 1] = { layer = layer, name = name, module = layer .. "/" .. name:gsub("%.[ch]$", "") }
      if name:match("%.h$") then
        assert(not header_at[name], "two headers named " .. name)
        header_at[name] = layer
      end
    end
  end
  p:close()
end

local problems, edges, nincludes = {}, {}, 0
for _, f in ipairs(files) do
  local n = 0
  for line in lines(src .. "/" .. f.layer .. "/" .. f.name):gmatch("[^\n]*") do
    n = n + 1
    local inc = line:match('^%s*#%s*include%s+"([^"]+)"')
    local at = inc and header_at[inc]
    if at then -- a header of ours (the generated ones live in the build folder)
      nincludes = nincludes + 1
      if RANK[at] > RANK[f.layer] then
        problems[#problems + 1] = string.format("%s/%s:%d: includes %s/%s, a higher layer",
                                                f.layer, f.name, n, at, inc)
      end
      local to = at .. "/" .. inc:gsub("%.h$", "")
      if to ~= f.module then
        edges[f.module] = edges[f.module] or {}
        edges[f.module][to] = true
      end
    end
  end
end

-- cycles among modules: a depth-first walk, reporting each back edge's circle
local state, stack, nmodules = {}, {}, 0
local function visit(m)
  state[m] = "open"
  stack[#stack + 1] = m
  local next_ = {}
  for to in pairs(edges[m] or {}) do next_[#next_ + 1] = to end
  table.sort(next_)
  for _, to in ipairs(next_) do
    if state[to] == "open" then
      local circle, on = {}, false
      for _, s in ipairs(stack) do
        on = on or s == to
        if on then circle[#circle + 1] = s end
      end
      circle[#circle + 1] = to
      problems[#problems + 1] = "modules include each other: " .. table.concat(circle, " -> ")
    elseif not state[to] then
      visit(to)
    end
  end
  stack[#stack] = nil
  state[m] = "done"
end
local modules = {}
for _, f in ipairs(files) do
  if not modules[f.module] then
    modules[f.module] = true
    nmodules = nmodules + 1
  end
end
local names = {}
for m in pairs(modules) do names[#names + 1] = m end
table.sort(names)
for _, m in ipairs(names) do
  if not state[m] then visit(m) end
end

print(string.format("%d files, %d modules, %d includes of our headers; layers %s", #files, nmodules,
                    nincludes, table.concat(ORDER, " < ")))
if #problems > 0 then
  for _, p in ipairs(problems) do print(p) end
  os.exit(1)
end
print("no upward include, no module including another that includes it (directly or in a circle)")
