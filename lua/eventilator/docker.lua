-- eventilator.docker: the Docker Engine API (1.41) over the daemon's unix
-- socket, for rules that start a new Redis replica when one goes down: a
-- service scale-up in a Swarm, or a plain container. See docs/docker.md.
--
-- Settings: config.docker (`socket`, `api`, `timeout`), opts on top.
-- Failures return nil, "docker: <what>: <Docker's message>".
local M = {}

-- The settings this module reads (config.docker): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
docker = {
  { "socket", "string", "/var/run/docker.sock" },
  { "api", "string", "v1.41" },
  { "timeout", "number", 10 },
}
]==]

local settings = require("eventilator.settings")

-- Docker's reply bodies, decoded by an instance of our own (lua-cjson keeps
-- its options per instance).
local json = require("cjson").new()

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- request(method, path [, body [, opts]]) -> status, decoded body | nil, err
-- path is below the API version ("/services/x"). body: a table, sent as JSON.
function M.request(method, path, body, opts)
  local s = settings.get("docker", opts)
  local timeout = tonumber(s.timeout) or 10
  local req = {
    method = method, url = "http://localhost/" .. tostring(s.api or "v1.41") .. path,
    unix_socket = s.socket, timeout = timeout, connect_timeout = math.min(timeout, 2),
  }
  if body ~= nil then
    req.body = json.encode(body)
    req.headers = { ["Content-Type"] = "application/json" }
  end
  local res, err = require("eventilator.http").request(req)
  if not res then return nil, "docker: " .. tostring(err) end
  local ok, decoded = pcall(json.decode, res.body ~= "" and res.body or "null")
  if not ok then decoded = res.body end
  if res.status >= 400 then
    local msg = type(decoded) == "table" and decoded.message or tostring(res.body):sub(1, 200)
    return nil, string.format("docker: %s %s: %s", method, path, tostring(msg)), res.status
  end
  return res.status, decoded
end

-- service(name [, opts]) -> spec, version index, id | nil, err
function M.service(name, opts)
  if type(name) ~= "string" or name == "" then error("bad argument #1 to 'service' (name expected)", 2) end
  local status, svc = M.request("GET", "/services/" .. urlencode(name), nil, opts)
  if not status then return nil, svc end
  if type(svc) ~= "table" or type(svc.Spec) ~= "table" or type(svc.Version) ~= "table" then
    return nil, "docker: service " .. name .. ": reply has no Spec or Version"
  end
  return svc.Spec, svc.Version.Index, svc.ID
end

-- lua-cjson cannot tell [] from {} once decoded, and Docker refuses {} where
-- it wants a list. Empty maps and lists mean the same as absent ones in a
-- ServiceSpec, except the mode markers, which are empty objects.
local KEEP_EMPTY = { Global = true, GlobalJob = true }
local function prune(t)
  for k, v in pairs(t) do
    if type(v) == "table" then
      prune(v)
      if type(k) == "string" and next(v) == nil and not KEEP_EMPTY[k] then t[k] = nil end
    end
  end
  return t
end

local function merge(dst, src)
  for k, v in pairs(src) do
    if type(v) == "table" and type(dst[k]) == "table" and v[1] == nil then
      merge(dst[k], v)
    else
      dst[k] = v
    end
  end
end

-- update(name, changes [, opts]) -> true | nil, err
-- changes: a table merged into the service's Spec (maps merged, lists
-- replaced), or function(spec) that edits it (returning nil, err to give up).
-- The update carries the Version.Index it read; when someone else updated
-- the service in between (Docker: "update out of sequence") it reads again
-- and tries once more.
function M.update(name, changes, opts)
  if type(changes) ~= "table" and type(changes) ~= "function" then
    error("bad argument #2 to 'update' (table or function expected)", 2)
  end
  local err
  for _ = 1, 2 do
    local spec, version, id = M.service(name, opts)
    if not spec then return nil, version end
    if type(changes) == "function" then
      local ok, cerr = changes(spec)
      if ok == nil and cerr ~= nil then return nil, "docker: service " .. name .. ": " .. tostring(cerr) end
    else
      merge(spec, changes)
    end
    local path = string.format("/services/%s/update?version=%d", urlencode(id), version)
    local status, res = M.request("POST", path, prune(spec), opts)
    if status then return true end
    err = res
    if not tostring(res):find("out of sequence", 1, true) then break end
  end
  return nil, err
end

-- scale(name, delta [, opts]) -> true | nil, err   (a replicated service)
function M.scale(name, delta, opts)
  delta = math.tointeger(delta)
  if not delta then error("bad argument #2 to 'scale' (integer expected)", 2) end
  return M.update(name, function(spec)
    local r = type(spec.Mode) == "table" and spec.Mode.Replicated
    if type(r) ~= "table" then return nil, "not a replicated service" end
    r.Replicas = math.max(0, (math.tointeger(r.Replicas) or 0) + delta)
    return true
  end, opts)
end

-- "redis:7" -> "redis", "7"; "reg:5000/x" -> "reg:5000/x", "latest"
local function image_ref(image)
  local name, tag = image:match("^(.-):([%w_][%w_.%-]*)$")
  if name and not tag:find("/") then return name, tag end
  return image, "latest"
end

-- run{ image, cmd, env, name, network, labels [, opts fields] } -> id | nil, err
-- POST /containers/create (pulling the image first if Docker has none),
-- then /containers/{id}/start. cmd and env are lists of strings.
function M.run(spec, opts)
  if type(spec) ~= "table" or type(spec.image) ~= "string" then
    error("bad argument #1 to 'run' (table with image expected)", 2)
  end
  local body = { Image = spec.image, Cmd = spec.cmd, Env = spec.env, Labels = spec.labels,
    HostConfig = spec.network and { NetworkMode = spec.network } or nil }
  local path = "/containers/create" .. (spec.name and ("?name=" .. urlencode(spec.name)) or "")
  local status, res, code = M.request("POST", path, body, opts)
  if not status and code == 404 and tostring(res):find("No such image", 1, true) then
    local name, tag = image_ref(spec.image)
    local pull = "/images/create?fromImage=" .. urlencode(name) .. "&tag=" .. urlencode(tag)
    local ok, perr = M.request("POST", pull, nil, opts)
    if not ok then return nil, perr end
    status, res = M.request("POST", path, body, opts)
  end
  if not status then return nil, res end
  local id = type(res) == "table" and res.Id
  if type(id) ~= "string" then return nil, "docker: create: reply has no Id" end
  local ok, serr = M.request("POST", "/containers/" .. urlencode(id) .. "/start", nil, opts)
  if not ok then return nil, serr end
  return id
end

-- replace_replica(ev [, opts]) -> true | nil, err
-- A new Redis replica of ev.master (a replica's +sdown names its master):
-- with `service` set, that service is scaled up by one (its tasks must find
-- the master themselves, e.g. through Sentinel); otherwise a container of
-- `image` runs `redis-server --replicaof <master ip> <port>`. At most
-- `max_per_hour` per pod (a failed attempt counts too, so a broken daemon
-- can't cause a storm); past it, a warning and true. Settings: config.swarm
-- (image, service, network, max_per_hour) with opts on top; config.docker
-- for the daemon.
function M.replace_replica(ev, opts)
  local s = settings.get("swarm", opts)
  local m = ev.master
  if type(m) ~= "table" or not m.ip or not ev.pod then return nil, "docker: the event names no master" end
  local log = require("eventilator.log")
  local go, err = require("eventilator.flap").limit("replace:" .. ev.pod, tonumber(s.max_per_hour) or 3, 3600)
  if go == nil then return nil, err end
  if not go then
    log.warn("docker: pod %s had %s replacements this hour; not starting another", ev.pod, s.max_per_hour)
    return true
  end
  if s.service then
    log.info("docker: scaling service %s up by one for pod %s", s.service, ev.pod)
    return M.scale(s.service, 1, opts)
  end
  local id, rerr = M.run({
    image = s.image, network = s.network,
    name = string.format("redis-%s-%d", ev.pod, math.floor(tonumber(ev.time) or os.time())),
    cmd = { "redis-server", "--replicaof", tostring(m.ip), tostring(m.port) },
    labels = { ["eventilator.pod"] = ev.pod },
  }, opts)
  if not id then return nil, rerr end
  log.info("docker: started %s as a replica of %s:%s (pod %s)", id:sub(1, 12), m.ip, m.port, ev.pod)
  return true
end

return M
