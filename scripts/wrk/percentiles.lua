-- A wrk script: one PCT line with requests/s, latency percentiles and the
-- count of non-2xx answers and socket errors (scripts/bench-ab reads it).
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body) if status < 200 or status > 299 then bad = bad + 1 end end
function done(summary, latency, requests)
  local non2xx = 0
  for _, t in ipairs(threads) do non2xx = non2xx + t:get("bad") end
  io.write(string.format("PCT rps=%.0f p50=%.2f p90=%.2f p99=%.2f p99.9=%.2f max=%.2f bad=%d err=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50)/1000, latency:percentile(90)/1000,
    latency:percentile(99)/1000, latency:percentile(99.9)/1000, latency.max/1000, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
