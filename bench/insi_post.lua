-- wrk script for bench/insi_vs_wiremock.py: POST one INSi traits search to /lps.
--
-- The SOAP envelope is read from the file named by $INSI_BODY (written by the Python script from
-- segur_bench/probes/insi-clerico.xml with a constant MessageID). At the end, one machine-readable
-- line "WRK_JSON {...}" gives the exact counters, which wrk's human summary rounds or omits.

local path = os.getenv("INSI_BODY")
if not path then
  error("INSI_BODY must name the file holding the request body")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = "/lps"
wrk.body = body
wrk.headers["Content-Type"] = "application/soap+xml; charset=utf-8"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d,'
      .. ' "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
