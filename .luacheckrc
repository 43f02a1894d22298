-- luacheck config: shipped modules and rules are Lua 5.4; rule files get the
-- rule environment's globals; specs are busted.
std = "lua54"
max_line_length = 110
files["rules/"] = { read_globals = { "on", "config", "log", "redis", "http", "tcp", "json", "dedupe", "silence" } }
files["examples/"] = { read_globals = { "on", "config", "log", "redis", "http", "tcp", "json", "dedupe", "silence" } }
files["conf/"] = { allow_defined_top = true, allow_defined = true, ignore = { "131" } }
files["spec/"] = { std = "+busted", max_line_length = 140 } -- long Lua patterns read better whole
files["bench/"] = { read_globals = { "on", "config", "log", "redis", "http", "tcp", "json" } }
