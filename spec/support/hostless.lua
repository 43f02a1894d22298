-- What the host gives shipped modules, for specs that load them in a stock
-- lua5.4: require("eventilator.config") returns the table returned here,
-- which starts as the built-in defaults (spec/support/defaults.lua; a spec
-- changes what it needs), require("eventilator.log") a logger that drops
-- lines, require("eventilator.pattern") on()'s matcher from the host module.
local CFG = require("defaults")()
package.preload["eventilator.config"] = function() return CFG end
package.preload["eventilator.log"] = function()
  local function nop() end
  return { debug = nop, info = nop, warn = nop, error = nop }
end
package.preload["eventilator.pattern"] = function() return require("eventilator.host").pattern end
return CFG
