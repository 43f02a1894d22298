-- eventilator watch [--sentinel HOST:PORT]...: the long-running listener of
-- contract section 10. The loop is C (src/watch/watch.c); this parses the options.
local M = {}

-- The settings this module reads (config.watch): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
watch = {
  { "sentinels", "list" },
  { "discover", "boolean", true },
  { "username", "string" },
  { "password", "string" },
  { "masters", "list" },
  { "dedupe_window", "number", 5 },
  { "concurrency", "integer", 4 },
  { "queue", "integer", 10000 },
  { "retries", "integer", 10 },
  { "reuse", "integer", 1000 },
  { "timeout", "number", 2 },
  { "listen", "string" }, -- "ip:port" of /metrics and /healthz; nil: off
}
]==]

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
