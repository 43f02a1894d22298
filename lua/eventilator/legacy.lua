-- eventilator.legacy: loads the Go eventilator's TOML configs unchanged and
-- maps them onto the Lua config's keys (docs/config.md, "Legacy configs").
--
-- Only the subset of TOML those configs use is read: comments, blank lines,
-- [Section] headers and `Key = value` with a string, integer, boolean or a
-- one-line array of those. Anything else is an error naming the line, never
-- a silent guess: a config that half-loads would run Sentinel's scripts with
-- settings nobody wrote. Key and section names match without regard to case,
-- as the Go decoder matched them to its struct fields.
local M = {}

-- Section -> key -> { section, key, type } of the new config.
-- Types: "string", "port", "boolean", "strings" (array of strings).
local MAP = {
  [""] = {
    RedisAddress = { "redis", "host", "string" },
    RedisPort = { "redis", "port", "port" },
    RedisAuth = { "redis", "password", "string" },
    RedisEnabled = { "warnings", "enabled", "boolean" },
  },
  Slack = {
    Token = { "slack", "token", "string" },
    Channel = { "slack", "channel", "string" },
    Enabled = { "slack", "enabled", "boolean" },
    AuthorName = { "slack", "author_name", "string" },
    Username = { "slack", "username", "string" },
    TriggerOn = { "slack", "trigger_on", "strings" },
  },
  SensuJIT = {
    Enabled = { "sensu", "enabled", "boolean" },
    IP = { "sensu", "host", "string" },
    Port = { "sensu", "port", "port" },
    TriggerOn = { "sensu", "trigger_on", "strings" },
    HandlerNoGoodSlave = { "sensu", "handler_no_good_slave", "string" },
    HandlerPromotedSlave = { "sensu", "handler_promoted_slave", "string" },
  },
}

-- Case-insensitive lookups: lowercased name -> canonical name.
local SECTION_BY_LC, KEY_BY_LC = {}, {}
for sec, keys in pairs(MAP) do
  SECTION_BY_LC[sec:lower()] = sec
  KEY_BY_LC[sec] = {}
  for k in pairs(keys) do KEY_BY_LC[sec][k:lower()] = k end
end

-- ---------------------------------------------------------------------------
-- Values. Each parser takes (line, pos) and returns value, next pos, or
-- raises a plain message (caught by parse, which adds file:line).

local function fail(msg) error({ msg = msg }, 0) end

local ESC = { b = "\b", t = "\t", n = "\n", f = "\f", r = "\r", ['"'] = '"', ["\\"] = "\\" }

local function check_ctrl(s)
  if s:find("[%z\1-\8\10-\31\127]") then fail("control character in string") end
end

local function basic_string(line, pos)
  if line:sub(pos, pos + 2) == '"""' then fail("multi-line strings are not supported") end
  local out, i = {}, pos + 1
  while true do
    local c = line:sub(i, i)
    if c == "" then fail("unterminated string") end
    if c == '"' then return table.concat(out), i + 1 end
    if c == "\\" then
      local e = line:sub(i + 1, i + 1)
      if ESC[e] then
        out[#out + 1] = ESC[e]
        i = i + 2
      elseif e == "u" or e == "U" then
        local n = e == "u" and 4 or 8
        local hex = line:sub(i + 2, i + 1 + n)
        if #hex ~= n or not hex:match("^%x+$") then fail("bad \\" .. e .. " escape") end
        local cp = tonumber(hex, 16)
        if cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then fail("bad unicode escape \\" .. e .. hex) end
        out[#out + 1] = utf8.char(cp)
        i = i + 2 + n
      elseif e == "" then
        fail("multi-line strings are not supported")
      else
        fail("unknown escape \\" .. e)
      end
    else
      check_ctrl(c)
      out[#out + 1] = c
      i = i + 1
    end
  end
end

local function literal_string(line, pos)
  if line:sub(pos, pos + 2) == "'''" then fail("multi-line strings are not supported") end
  local close = line:find("'", pos + 1, true)
  if not close then fail("unterminated string") end
  local s = line:sub(pos + 1, close - 1)
  check_ctrl(s)
  return s, close + 1
end

local function bare(line, pos)
  local tok = line:match("^[%w%+%-%.:_]+", pos)
  if not tok then
    local c = line:sub(pos, pos)
    if c == "" then fail("missing value") end
    if c == "{" then fail("inline tables are not supported") end
    fail("unexpected character '" .. c .. "'")
  end
  local after = pos + #tok
  if tok == "true" then return true, after end
  if tok == "false" then return false, after end
  if tok:match("^%d%d%d%d%-%d%d%-%d%d") or tok:match("^%d%d:%d%d") then
    fail("dates and times are not supported")
  end
  if tok:match("^[+-]?0[xob]") then fail("hexadecimal, octal and binary integers are not supported") end
  if tok:match("^[+-]?%d[%d_]*$") then
    local digits = tok:gsub("^[+-]", "")
    if digits:match("__") or digits:match("_$") then fail("bad integer " .. tok) end
    if #digits > 1 and digits:match("^0") then fail("leading zeros are not allowed in integers") end
    local n = math.tointeger(tonumber((tok:gsub("_", ""))))
    if not n then fail("integer out of range: " .. tok) end
    return n, after
  end
  if tok:match("^[+-]?%d[%d_]*[%.eE]") or tok:match("^[+-]?inf$") or tok:match("^[+-]?nan$") then
    fail("floats are not supported")
  end
  fail("invalid value " .. tok)
end

local function scalar(line, pos)
  local c = line:sub(pos, pos)
  if c == '"' then return basic_string(line, pos) end
  if c == "'" then return literal_string(line, pos) end
  if c == "[" then fail("nested arrays are not supported") end
  return bare(line, pos)
end

local function skip_ws(line, pos)
  return line:match("^[ \t]*()", pos)
end

local function array(line, pos)
  local out = {}
  pos = pos + 1
  while true do
    pos = skip_ws(line, pos)
    local c = line:sub(pos, pos)
    if c == "]" then return out, pos + 1 end
    if c == "" or c == "#" then fail("multi-line arrays are not supported") end
    local v
    v, pos = scalar(line, pos)
    out[#out + 1] = v
    pos = skip_ws(line, pos)
    c = line:sub(pos, pos)
    if c == "," then
      pos = pos + 1
    elseif c == "]" then
      return out, pos + 1
    elseif c == "" or c == "#" then
      fail("multi-line arrays are not supported")
    else
      fail("expected , or ] in array")
    end
  end
end

local function value(line, pos)
  if line:sub(pos, pos) == "[" then return array(line, pos) end
  return scalar(line, pos)
end

local function rest_is_empty(line, pos)
  pos = skip_ws(line, pos)
  local c = line:sub(pos, pos)
  if c ~= "" and c ~= "#" then fail("unexpected text after value: " .. line:sub(pos)) end
  check_ctrl(line:sub(pos))
end

-- ---------------------------------------------------------------------------

local function typed(v, ty, key)
  local function want(what) fail(string.format("%s must be %s", key, what)) end
  if ty == "string" then
    if type(v) ~= "string" then want("a string") end
    if v == "" then return nil end -- empty means unset: the default applies
    return v
  elseif ty == "port" then
    if math.type(v) ~= "integer" then want("an integer") end
    if v < 1 or v > 65535 then want("a port number (1-65535)") end
    return v
  elseif ty == "boolean" then
    if type(v) ~= "boolean" then want("true or false") end
    return v
  elseif ty == "strings" then
    if type(v) ~= "table" then want("an array of strings") end
    for _, s in ipairs(v) do
      if type(s) ~= "string" then want("an array of strings") end
    end
    return v
  end
  error("legacy: unknown type " .. ty)
end

-- legacy.parse(text, filename) -> config table | nil, "filename:line: message"
-- The table holds the new config's sections, only with the keys the file
-- sets, e.g. { redis = { host = "127.0.0.1", port = 6379 },
-- warnings = { enabled = false }, slack = { ... }, sensu = { ... } }.
function M.parse(text, filename)
  filename = filename or "config"
  local cfg = {}
  local section = ""
  local seen_sections = {}
  local seen_keys = { [""] = {} }
  local lineno = 0
  for line in (tostring(text) .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if lineno == 1 then line = line:gsub("^\239\187\191", "") end -- UTF-8 BOM
    local ok, err = pcall(function()
      local pos = skip_ws(line, 1)
      local c = line:sub(pos, pos)
      if c == "" or c == "#" then
        check_ctrl(line:sub(pos))
        return
      end
      if line:sub(pos, pos + 1) == "[[" then fail("arrays of tables ([[...]]) are not supported") end
      if c == "[" then
        local name, after = line:match("^%[[ \t]*([^%]]-)[ \t]*%]()", pos)
        if not name then fail("bad section header") end
        rest_is_empty(line, after)
        if name:find("[\"'%.]") then
          fail("dotted or quoted section names are not supported: [" .. name .. "]")
        end
        local canon = SECTION_BY_LC[name:lower()]
        if not canon or canon == "" then
          fail("unknown section [" .. name .. "] (known: [Slack], [SensuJIT])")
        end
        if seen_sections[canon] then
          fail(string.format("section [%s] is defined twice (first on line %d)", name, seen_sections[canon]))
        end
        seen_sections[canon] = lineno
        seen_keys[canon] = {}
        section = canon
        return
      end
      if c == '"' or c == "'" then fail("quoted keys are not supported") end
      local key, after = line:match("^([%w_%-]+)[ \t]*()", pos)
      if not key then fail("expected Key = value") end
      local nc = line:sub(after, after)
      if nc == "." then fail("dotted keys are not supported") end
      if nc ~= "=" then fail("expected = after " .. key) end
      local v, vend = value(line, skip_ws(line, after + 1))
      rest_is_empty(line, vend)
      local canon = KEY_BY_LC[section][key:lower()]
      if not canon then
        if section == "" then
          fail("unknown top-level key " .. key
            .. " (known: RedisAddress, RedisPort, RedisAuth, RedisEnabled)")
        end
        fail(string.format("unknown key %s in [%s]", key, section))
      end
      if seen_keys[section][canon] then
        fail(string.format("duplicate key %s (first set on line %d)", key, seen_keys[section][canon]))
      end
      seen_keys[section][canon] = lineno
      local target = MAP[section][canon]
      local tv = typed(v, target[3], key)
      cfg[target[1]] = cfg[target[1]] or {}
      cfg[target[1]][target[2]] = tv
    end)
    if not ok then
      if type(err) == "table" then
        return nil, string.format("%s:%d: %s", filename, lineno, err.msg)
      end
      error(err, 0)
    end
  end
  return cfg
end

return M
