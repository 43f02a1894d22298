-- eventilator sentinels doctor: this host as Sentinel will see it when it
-- runs the scripts (contract section 11). One line per check, each failing
-- one with its fix; 1 when any fails. Called by eventilator.sentinels, which
-- passes the binding, the cli host, the options, how to find this
-- installation's scripts, and its printer.
local M = {}

local DEFAULT_UNIT = "/lib/systemd/system/redis-sentinel.service"
local UNIT_NAME = "redis-sentinel.service"

-- Does user `u` get `bits` (4 r, 2 w, 1 x) on `st`? Mode bits only; root
-- gets everything but needs one x bit to execute a file.
local function can(st, u, bits)
  if u.uid == 0 then
    if bits & 1 ~= 0 and st.type ~= "dir" then return st.mode & 73 ~= 0 end -- 0111
    return true
  end
  local m
  if st.uid == u.uid then
    m = (st.mode >> 6) & 7
  else
    m = st.mode & 7
    for _, g in ipairs(u.groups) do
      if g == st.gid then
        m = (st.mode >> 3) & 7
        break
      end
    end
  end
  return m & bits == bits
end

local function octal(mode)
  return string.format("%04o", mode)
end

-- Every folder from / down to `path`'s parent must be searchable by u.
-- -> nil | message, fix
local function walk(S, path, u)
  local dir = ""
  local parts = {}
  for p in path:gmatch("[^/]+") do parts[#parts + 1] = p end
  for i = 0, #parts - 1 do
    dir = i == 0 and "/" or (dir == "/" and "" or dir) .. "/" .. parts[i]
    local st = S.stat(dir)
    if st and not can(st, u, 1) then
      return string.format("folder %s is not searchable by %s (mode %s, uid %d, gid %d)", dir, u.name,
        octal(st.mode), st.uid, st.gid), string.format("chmod o+x %s (or give %s's group g+x)", dir, u.name)
    end
  end
end

-- ExecPaths / NoExecPaths of the unit and its drop-ins, in the order
-- systemd reads them; an empty assignment resets a list.
local function unit_paths(o)
  local files = {}
  if o.unit then
    files[1] = o.unit
  else
    local main = DEFAULT_UNIT
    local f = io.open("/etc/systemd/system/" .. UNIT_NAME, "r")
    if f then
      f:close()
      main = "/etc/systemd/system/" .. UNIT_NAME
    end
    files[1] = main
    for _, d in ipairs({ "/lib/systemd/system/", "/run/systemd/system/", "/etc/systemd/system/" }) do
      local p = io.popen("ls -1 " .. d .. UNIT_NAME .. ".d/*.conf 2>/dev/null")
      if p then
        for line in p:lines() do files[#files + 1] = line end
        p:close()
      end
    end
  end
  local f = io.open(files[1], "r")
  if not f then return nil, files[1] end
  f:close()
  local lists = { ExecPaths = {}, NoExecPaths = {} }
  for _, file in ipairs(files) do
    local fh = io.open(file, "r")
    local section
    for line in fh and fh:lines() or function() end do
      local s = line:match("^%[(.-)%]")
      if s then section = s end
      local key, value = line:match("^%s*(%a+)%s*=%s*(.-)%s*$")
      if section == "Service" and lists[key] then
        if value == "" then
          lists[key] = {}
        else
          for p in value:gmatch("%S+") do lists[key][#lists[key] + 1] = (p:gsub("^[-+]+", "")) end
        end
      end
    end
    if fh then fh:close() end
  end
  return lists, table.concat(files, ", ")
end

-- May the unit execute `real`? The most specific mount wins.
local function exec_allowed(lists, real)
  local best, allowed = -1, true
  local function under(prefix)
    prefix = prefix:gsub("/+$", "")
    return prefix == "" or real == prefix or real:sub(1, #prefix + 1) == prefix .. "/", #prefix
  end
  for _, kind in ipairs({ "NoExecPaths", "ExecPaths" }) do
    for _, p in ipairs(lists[kind]) do
      local hit, len = under(p)
      if hit and len >= best then best, allowed = len, kind == "ExecPaths" end
    end
  end
  return allowed
end

-- Every mode's config, read as that mode's real call reads it (the mode is
-- the script's name: eventilator.conf, then <mode>.conf over it, or
-- $EVENTILATOR_CONF alone): each file readable by Sentinel's user, no error
-- in any. One line per mode.
local function check_mode_configs(S, host, u, scripts, ok, fail)
  local describe, seen = require("eventilator.cli").describe, {}
  for i, default in ipairs({ "eventilator", "reconfigurator" }) do
    local mode = scripts[i] and scripts[i]:match("([^/]+)$") or default
    if not seen[mode] then
      seen[mode] = true
      local config, problems, files = host.read_config(mode)
      local what = string.format("config of %s (%s)", mode, describe(files))
      local unreadable -- the first file Sentinel's user cannot read
      for _, f in ipairs(files) do
        local st = S.stat(f.path)
        if not unreadable and st and not (can(st, u, 4) and not walk(S, f.path, u)) then
          unreadable = { path = f.path, mode = octal(st.mode) }
        end
      end
      local errors = {}
      for _, p in ipairs(config and problems or { { msg = problems } }) do errors[#errors + 1] = p.msg end
      if unreadable then
        local f = unreadable.path
        fail(string.format("%s: %s is not readable by %s (mode %s)", what, f, u.name, unreadable.mode),
          string.format("chgrp %s %s && chmod g+r %s", u.name, f, f))
      elseif #errors > 0 then
        fail(string.format("%s: %d error(s): %s", what, #errors, table.concat(errors, "; ")),
          "fix each file:line named; `eventilator check` lists them")
      else
        ok("%s: valid, readable by %s", what, u.name)
      end
    end
  end
end

function M.run(S, host, o, installation, out)
  local failed = 0
  local function ok(fmt, ...) out("ok    " .. fmt, ...) end
  local function fail(what, fix)
    failed = failed + 1
    out("FAIL  %s\n      fix: %s", what, fix)
  end
  local uname = o.user or "redis"
  local u, uerr = S.user(uname)
  if not u then
    fail(string.format("Sentinel's user: %s", uerr), "give --user NAME: the user redis-sentinel runs as")
    return 1
  end
  ok("Sentinel's user: %s (uid %d)", u.name, u.uid)

  -- the scripts
  local n, r = o.notification, o.reconfig
  if not (n and r) then
    local dn, dr = installation(S)
    n, r = n or dn, r or dr
    if not n or not r then
      fail("this installation's scripts: " .. tostring(dr), "give --notification PATH and --reconfig PATH")
    end
  end
  local lists, unit = unit_paths(o)
  if not lists then
    ok("no %s at %s: no ExecPaths restriction to check", UNIT_NAME, unit)
  end
  for _, sc in ipairs({ { "notification-script", n }, { "client-reconfig-script", r } }) do
    local kind, path = sc[1], sc[2]
    if not path then goto next end
    do
      local real = S.realpath(path)
      local st = real and S.stat(real)
      local msg, fix = walk(S, path, u)
      if not msg and real and real ~= path then msg, fix = walk(S, real, u) end
      if not st then
        fail(string.format("%s %s does not exist", kind, path),
          "install eventilator (its executables go under /usr/lib/eventilator), or give the right path")
      elseif msg then
        fail(string.format("%s %s: %s", kind, path, msg), fix)
      elseif st.type ~= "file" then
        fail(string.format("%s %s is not a file", kind, path), "point Sentinel at the eventilator executable")
      elseif not can(st, u, 1) then
        fail(string.format("%s %s is not executable by %s (mode %s, uid %d, gid %d)", kind, path, u.name,
          octal(st.mode), st.uid, st.gid), "chmod 755 " .. real)
      else
        ok("%s %s: executable by %s, every folder on the way searchable", kind, path, u.name)
      end
      if lists and real then
        if exec_allowed(lists, real) then
          ok("%s %s: the %s unit may execute it (%s)", kind, real, UNIT_NAME, unit)
        else
          fail(string.format("%s %s lies outside the ExecPaths of %s (ExecPaths=%s, NoExecPaths=%s; %s)",
            kind, real, UNIT_NAME, table.concat(lists.ExecPaths, " "), table.concat(lists.NoExecPaths, " "),
            unit),
            "install under /usr/lib (cmake -DCMAKE_INSTALL_PREFIX=/usr/lib/eventilator, or the Debian "
            .. "package), or allow its folder: systemctl edit redis-sentinel, add [Service] ExecPaths="
            .. real:match("^(.*)/[^/]+$"))
        end
      end
    end
    ::next::
  end

  check_mode_configs(S, host, u, { n, r }, ok, fail)

  -- config and rules, as `eventilator check` loads them
  local config, path, format = host.load_config()
  if not config then
    fail("config " .. tostring(path) .. " does not load (the error is above)",
      "fix the file:line named above; `eventilator check` shows it again")
    out("%d check(s) failed", failed)
    return 1
  end
  local cst = S.stat(path)
  if cst and not (can(cst, u, 4) and not walk(S, path, u)) then
    fail(string.format("config %s is not readable by %s (mode %s)", path, u.name, octal(cst.mode)),
      string.format("chgrp %s %s && chmod g+r %s", u.name, path, path))
  else
    ok("config %s (%s) loads%s", path, format, cst and ", readable by " .. u.name or "")
  end
  local files = host.load_rules()
  local bad = {}
  for _, f in ipairs(files) do
    if not f.ok then bad[#bad + 1] = f.err end
  end
  if #bad > 0 then
    fail(string.format("%d of %d rule file(s) fail to load: %s", #bad, #files, table.concat(bad, "; ")),
      "fix the file:line named; `eventilator check` lists every rule file")
  else
    ok("%d rule file(s) load from %s", #files, os.getenv("EVENTILATOR_RULES") or config.rules_dir)
  end

  -- state_dir
  local sd = config.state_dir
  local sst = S.stat(sd)
  local wmsg, wfix = walk(S, sd, u) -- the folders above it; its own bits are checked below
  if not sst then
    fail(string.format("state_dir %s does not exist", sd), string.format("install -d -o %s -g %s -m 750 %s",
      u.name, u.name, sd))
  elseif wmsg then
    fail("state_dir " .. sd .. ": " .. wmsg, wfix)
  elseif sst.type ~= "dir" or not can(sst, u, 3) then
    fail(string.format("state_dir %s is not writable by %s (mode %s, uid %d, gid %d)", sd, u.name,
      octal(sst.mode), sst.uid, sst.gid), string.format("chown %s: %s && chmod 750 %s", u.name, sd, sd))
  else
    ok("state_dir %s is writable by %s", sd, u.name)
  end

  -- the metrics store
  if config.metrics and config.metrics.enabled then
    local store = require("eventilator.store")
    local opts = store.connect_opts()
    local where = opts.path or string.format("%s:%s", opts.host or "127.0.0.1", tostring(opts.port or 6379))
    local c, err = store.connect()
    local pong, perr
    if c then
      pong, perr = c:call("PING")
      c:close()
    end
    if c and pong then
      ok("metrics store %s answers", where)
    else
      fail(string.format("metrics store %s does not answer: %s", where, tostring(err or perr)),
        "start that Redis, correct redis = { ... } in the config, or set metrics = { enabled = false }")
    end
  else
    ok("metrics are off: no store to check")
  end
  out(failed == 0 and "all checks passed" or "%d check(s) failed", failed)
  return failed == 0 and 0 or 1
end

return M
