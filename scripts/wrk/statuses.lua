-- wrk script for scripts/bench: counts the answers by status (200, 502, 503,
-- any other) and prints one machine-readable RESULT line at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad_gateway = 0
  unavailable = 0
  other = 0
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 502 then
    bad_gateway = bad_gateway + 1
  elseif status == 503 then
    unavailable = unavailable + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local counts = { ok = 0, bad_gateway = 0, unavailable = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(counts) do
      counts[name] = counts[name] + thread:get(name)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d s200=%d s502=%d s503=%d other=%d socket=%d\n",
    summary.requests, counts.ok, counts.bad_gateway, counts.unavailable, counts.other,
    e.connect + e.read + e.write + e.timeout))
end
