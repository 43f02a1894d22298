-- busted --helper: lets specs require the built C modules, the shipped Lua
-- modules and the support code, from a build tree named by EVENTILATOR_BUILD.
local build = os.getenv("EVENTILATOR_BUILD") or "build"
local src = os.getenv("EVENTILATOR_SRC") or "."
package.cpath = build .. "/lib/eventilator/?.so;" .. package.cpath
package.path = src .. "/lua/?.lua;" .. src .. "/spec/support/?.lua;" .. package.path
