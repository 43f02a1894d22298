-- Log every event Sentinel reports, one line each, at info level.
on("*", function(ev)
  log.info("%s %s", ev.name, ev.text or table.concat(ev.args or {}, " "))
  return true
end)
