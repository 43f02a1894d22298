-- eventilator watch [--sentinel HOST:PORT]...: the long-running listener of
-- contract section 10. The loop is C (src/watch.c); this parses the options.
local M = {}

local usage = "usage: eventilator watch [--sentinel HOST:PORT]... [--no-work]\n"

function M.main(args, host)
  local seeds, opts = {}, {}
  local i = 2
  while i <= #args do
    local a = args[i]
    if a == "--sentinel" and args[i + 1] then
      seeds[#seeds + 1] = args[i + 1]
      i = i + 2
    elseif a:match("^%-%-sentinel=") then
      seeds[#seeds + 1] = a:sub(#"--sentinel=" + 1)
      i = i + 1
    elseif a == "--no-work" then -- cluster mode: append events, run none (docs/cluster.md)
      opts.no_work = true
      i = i + 1
    elseif a == "-h" or a == "--help" then
      io.stdout:write(usage)
      return 0
    else
      io.stderr:write("eventilator watch: unknown option '", a, "'\n", usage)
      return 2
    end
  end
  if not host.watch then
    io.stderr:write("eventilator watch: this binary was built without watch mode\n")
    return 2
  end
  return host.watch(seeds, opts)
end

return M
