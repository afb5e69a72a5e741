-- wrk script for scripts/bench: counts responses outside 2xx (wrk itself only
-- counts statuses > 399, so a 302 back to the login page would go unnoticed)
-- and prints one machine-readable RESULT line at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local non2xx = 0
  for _, thread in ipairs(threads) do
    non2xx = non2xx + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    non2xx, e.connect + e.read + e.write + e.timeout))
end
