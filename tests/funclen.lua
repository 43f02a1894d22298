-- No function of ours over MAX lines (CTest `function_length`; docs/design.md):
-- a long function is several concerns that want names of their own. The
-- house style (.clang-format) opens a function's body with a `{` alone at the
-- start of a line and closes it with a `}` alone there, so a body is what
-- lies between the two.
--   lua5.4 tests/funclen.lua MAX FILE...   -> exit 1 listing every longer one
local max, long, count = tonumber(arg[1]), {}, 0
for i = 2, #arg do
  local f = assert(io.open(arg[i], "rb"))
  local start, name, prev = nil, nil, {}
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line == "{" then
      start = n
      for k = #prev, math.max(1, #prev - 5), -1 do -- the signature, on the lines before
        name = prev[k]:match("^[%a_][^(]-([%w_]+)%s*%(") or name
        if name then break end
      end
    elseif line == "}" and start then
      count = count + 1
      if n - start - 1 > max then
        long[#long + 1] = string.format("%s:%d: %s: %d lines", arg[i], start, name or "?", n - start - 1)
      end
      start, name = nil, nil
    end
    prev[#prev + 1] = line
    if #prev > 6 then table.remove(prev, 1) end
  end
  f:close()
end
print(string.format("%d functions in %d files; longest allowed: %d lines", count, #arg - 1, max))
for _, l in ipairs(long) do print(l) end
os.exit(#long == 0 and 0 or 1)
