-- Load one of the default rule files (rules/) with a given config and a
-- recording on(), to see what it registers without running the engine.
local procs = require("procs")

return function(file, config)
  local registered = {}
  local env = setmetatable({
    config = config,
    on = function(pattern, handler)
      registered[#registered + 1] = { pattern = pattern, handler = handler }
    end,
  }, { __index = _G })
  assert(loadfile(procs.src .. "/rules/" .. file, "t", env))()
  return registered, procs.read(procs.src .. "/rules/" .. file)
end
