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
  -- ReadWriteDirectories= is the older name of ReadWritePaths= (Debian's unit has both)
  local lists = { ExecPaths = {}, NoExecPaths = {}, ReadWritePaths = {} }
  local ALIAS = { ReadWriteDirectories = "ReadWritePaths" }
  local SCALAR = { ProtectSystem = true, PrivateTmp = true }
  for _, file in ipairs(files) do
    local fh = io.open(file, "r")
    local section
    for line in fh and fh:lines() or function() end do
      local s = line:match("^%[(.-)%]")
      if s then section = s end
      local key, value = line:match("^%s*(%a+)%s*=%s*(.-)%s*$")
      key = ALIAS[key] or key
      if section == "Service" and SCALAR[key] then
        lists[key] = value
      elseif section == "Service" and lists[key] then
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

-- Is `real` at or below `prefix`? -> yes, prefix length
local function under(real, prefix)
  prefix = prefix:gsub("/+$", "")
  return prefix == "" or real == prefix or real:sub(1, #prefix + 1) == prefix .. "/", #prefix
end

local function yes(v)
  return v == "yes" or v == "true" or v == "on" or v == "1"
end

-- May the unit's processes write at `real` (a resolved path)? -> nil | why,
-- "tmp" (PrivateTmp: no ReadWritePaths= helps) or "ro"
-- ProtectSystem=strict leaves only the ReadWritePaths writable (full: /usr,
-- /boot, /efi and /etc read-only; yes: the first three); PrivateTmp= gives
-- the service a /tmp and /var/tmp of its own, which nobody else sees.
local function unit_write(lists, real)
  if yes(lists.PrivateTmp) and (under(real, "/tmp") or under(real, "/var/tmp")) then
    return "the unit has PrivateTmp=yes: Sentinel and its scripts write to a /tmp of their own, "
      .. "which nobody else sees and which goes when Sentinel stops", "tmp"
  end
  local ps, ro = lists.ProtectSystem
  if ps == "strict" then
    ro = true
  elseif ps == "full" or yes(ps) then
    for _, p in ipairs({ "/usr", "/boot", "/efi", ps == "full" and "/etc" or nil }) do
      if under(real, p) then ro = true end
    end
  end
  if not ro then return nil end
  for _, p in ipairs(lists.ReadWritePaths) do
    if under(real, p) then return nil end
  end
  return string.format("the unit's ProtectSystem=%s makes it read-only to Sentinel and its scripts, and it "
    .. "is under none of ReadWritePaths=%s", ps, table.concat(lists.ReadWritePaths, " ")), "ro"
end

-- May the unit execute `real`? The most specific mount wins.
local function exec_allowed(lists, real)
  local best, allowed = -1, true
  for _, kind in ipairs({ "NoExecPaths", "ExecPaths" }) do
    for _, p in ipairs(lists[kind]) do
      local hit, len = under(real, p)
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

-- The log: where a call's lines go, writable by Sentinel's user and, under
-- the unit, where its sandbox lets it write. A call that cannot write there
-- logs to the fallback file (log.c), and nobody at a terminal sees why.
local function check_log(S, host, config, u, lists, ok, fail)
  local target = require("eventilator.cli").log_target(config)
  local to, why, fallback = host.log_where()
  local label = "log file"
  if target == "stderr" then
    ok("log.target is stderr: under Debian's unit the journal keeps it (journalctl -u %s); a Sentinel "
      .. "with daemonize yes throws it away", UNIT_NAME)
    return
  elseif target == "syslog" and not why then
    ok("log goes to syslog")
    return
  elseif target == "syslog" then
    ok("log.target is syslog, but %s: a call logs to %s", why, to)
    label, target = "fallback log file", to
  end
  local dir, base = target:match("^(.*)/([^/]*)$")
  if not dir then
    fail(string.format("%s %s is not an absolute path (Sentinel runs scripts in its own folder)", label,
      target), "give log.target an absolute path, under /var/log/redis")
    return
  end
  dir = dir == "" and "/" or dir
  local rdir = S.realpath(dir)
  local st, dst = S.stat(target), rdir and S.stat(rdir)
  local real = rdir and (rdir == "/" and "" or rdir) .. "/" .. base
  local wmsg, wfix = walk(S, target, u)
  local uw, tmp
  if lists and real then uw, tmp = unit_write(lists, real) end
  if not dst then
    fail(string.format("%s %s: its folder %s does not exist", label, target, dir),
      string.format("install -d -o %s -m 750 %s, or point log.target into /var/log/redis", u.name, dir))
  elseif wmsg then
    fail(string.format("%s %s: %s", label, target, wmsg), wfix)
  elseif st and S.realpath(target) ~= real then
    fail(string.format("%s %s is a symbolic link, which the log is never written through", label, target),
      "give log.target the file it points to: " .. tostring(S.realpath(target)))
  elseif st and st.type == "dir" then
    fail(string.format("%s %s is a folder", label, target), "give log.target a file's path")
  elseif uw then
    fail(string.format("%s %s: %s", label, target, uw), "point log.target into /var/log/redis (one of the "
      .. "unit's ReadWritePaths)" .. (tmp == "tmp" and "" or ", or allow the folder: systemctl edit "
      .. "redis-sentinel, add [Service] ReadWritePaths=" .. rdir))
  elseif st and not can(st, u, 2) then
    fail(string.format("%s %s is not writable by %s (mode %s, uid %d, gid %d): its calls log to %s instead",
      label, target, u.name, octal(st.mode), st.uid, st.gid, label == "log file" and fallback or "stderr"),
      string.format("chown %s %s", u.name, target))
  elseif not st and not can(dst, u, 3) then
    fail(string.format("%s %s does not exist yet, and %s may not make files in %s (mode %s, uid %d, gid %d)",
      label, target, u.name, dir, octal(dst.mode), dst.uid, dst.gid),
      string.format("install -m 640 -o %s /dev/null %s (the file, not the folder)", u.name, target))
  else
    ok("%s %s: %s by %s%s", label, target, st and "writable" or "can be made", u.name,
      lists and ", and the unit lets Sentinel write there" or "")
  end
end

-- What a call does without each folder of state_dir.
local WITHOUT = {
  [""] = "every call keeps no delivery record and compiles every rule file",
  retries = "a failed call keeps no delivery record, so its retry runs every handler again",
  ["rules-cache"] = "every call compiles every rule file",
}

-- state_dir and its folders, by the rule every call applies (statedir.c,
-- asked through the host) for Sentinel's user: its alone, or not used at
-- all. A folder of state_dir is eventilator's: chown it. state_dir itself
-- may have been given a folder shared with more, so its fix says "if".
local function check_state(S, host, sd, u, lists, ok, fail)
  local function folder(sub)
    local p = sub == "" and sd or sd .. "/" .. sub
    local label = sub == "" and "state_dir " .. sd or "state_dir folder " .. p
    local good, problem = host.private_dir(p, u.uid)
    local st = S.stat(p)
    local own = sub == "" and "if " .. sd .. " holds eventilator's state alone, " or ""
    local elsewhere = sub == "" and string.format("; else give state_dir a folder of its own: "
      .. "install -d -o %s -g %s -m 700 /var/lib/redis/eventilator", u.name, u.name) or ""
    local wmsg, wfix = walk(S, p, u) -- the folders above it
    local real = S.realpath(p) or p
    local uw, tmp
    if lists then uw, tmp = unit_write(lists, real) end
    if problem == "missing" and sub == "" then
      fail(string.format("state_dir %s does not exist", sd),
        string.format("install -d -o %s -g %s -m 700 %s", u.name, u.name, sd))
    elseif problem == "missing" then
      ok("%s: not made yet (the first call makes it, as %s)", label, u.name)
      return true
    elseif wmsg then
      fail(label .. ": " .. wmsg, wfix)
    elseif problem == "not a folder" then
      fail(string.format("%s is not a folder: %s", label, WITHOUT[sub]),
        string.format("remove %s (a call makes it again)", p))
    elseif problem == "owner" then
      fail(string.format("%s belongs to uid %d, not to %s (uid %d), which runs Sentinel's calls: %s", label,
        st.uid, u.name, u.uid, WITHOUT[sub]), string.format("%schown -R %s: %s%s", own, u.name, p, elsewhere))
    elseif problem == "writable" then
      fail(string.format("%s is writable by its group or others (mode %s): %s", label, octal(st.mode),
        WITHOUT[sub]), string.format("%schmod go-w %s%s", own, p, elsewhere))
    elseif not good then
      fail(string.format("%s: %s", label, tostring(problem)), "check the folder and the file system under it")
    elseif not can(st, u, 3) then
      fail(string.format("%s is not writable by %s (mode %s, uid %d, gid %d): %s", label, u.name,
        octal(st.mode), st.uid, st.gid, WITHOUT[sub]), string.format("chmod 700 %s", p))
    elseif uw then
      fail(string.format("%s: %s", label, uw), "give state_dir a folder under /var/lib/redis (one of the "
        .. "unit's ReadWritePaths)" .. (tmp == "tmp" and "" or ", or systemctl edit redis-sentinel, add "
        .. "[Service] ReadWritePaths=" .. real))
    else
      ok("%s is %s's alone%s", label, u.name, sub == "" and ", writable by it" or "")
      return true
    end
    return false
  end
  if folder("") then
    folder("retries")
    folder("rules-cache")
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

  check_log(S, host, config, u, lists, ok, fail)
  check_state(S, host, config.state_dir, u, lists, ok, fail)

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
