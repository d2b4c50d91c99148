-- wrk script: every request in absolute form, as a client configured with HTTP_PROXY sends
-- it (`GET http://127.0.0.1:PORT/small HTTP/1.1` with the origin's Host header), so wrk can
-- load a forward proxy. BENCH_TARGET is the origin URL; wrk connects to the proxy given on
-- its command line. Setting wrk.path here keeps wrk's fast path (one pre-built request).
local target = os.getenv("BENCH_TARGET")
if target == nil or target:match("^http://[^/]+/") == nil then
  error("BENCH_TARGET must be an http://host:port/path URL")
end
wrk.path = target
wrk.headers["Host"] = target:match("^http://([^/]+)/")
