-- A recording of N calls (default 10 000) for bench/history.sh: failovers
-- shaped like the corpus's (spec/support/recording.lua) of 8 masters, each
-- seen by 3 Sentinels, one every 10 minutes, every fifth with a failed
-- handler and its retry, and a replica down and back between them.
--   lua5.4 bench/history_gen.lua FILE [N]
package.path = "spec/support/?.lua;" .. package.path
local recording = require("recording")

local path, n = arg[1], tonumber(arg[2]) or 10000
local f = assert(io.open(path, "wb"))
local written, k, t0 = 0, 0, 1795600000
local sentinels = { "pid:4101", "pid:4102", "pid:4103" }
while written < n do
  k = k + 1
  local pod = "pod" .. (k % 8 + 1)
  local fail = (k % 5 == 0) and { ["client-reconfig leader"] = "connection refused" } or nil
  local lines = recording.failover{ pod = pod, t0 = t0 + 600 * k, sentinels = sentinels, leader = k % 3 + 1,
    port = 6379 + k, epoch = k, fail = fail }
  for _, l in ipairs(recording.quiet{ pod = pod, t0 = t0 + 600 * k + 300, sentinels = sentinels }) do
    lines[#lines + 1] = l
  end
  for _, l in ipairs(lines) do
    if written < n then
      f:write(recording.encode(l), "\n")
      written = written + 1
    end
  end
end
f:close()
