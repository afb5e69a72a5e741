-- Login throughput, step 3 of 3 (timed): send each recorded callback, with its
-- login cookie, to portico. Each is a complete sign-in on portico's side: code
-- exchange at the dev OP, ID token verification, session written to Redis.
-- A success is the redirect to the page first asked for (a failed sign-in
-- gets an error page instead). Arguments: INPUT_PREFIX.
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local function header(headers, wanted)
  for name, value in pairs(headers) do
    if string.lower(name) == wanted then
      return value
    end
  end
  return nil
end

function init(args)
  requests_list = {}
  for line in io.lines(args[1] .. id) do
    local path, cookie = string.match(line, "^([^\t]+)\t(.+)$")
    if path then
      table.insert(requests_list, wrk.format("GET", path, { Cookie = cookie }))
    end
  end
  filler = wrk.format("GET", "/healthz")
  next_index = 1
  ok = 0
  failed = 0
  exhausted = 0
end

function request()
  local prepared = requests_list[next_index]
  if prepared == nil then
    exhausted = 1
    wrk.thread:stop()
    return filler
  end
  next_index = next_index + 1
  return prepared
end

function response(status, headers, body)
  if status == 200 then
    return -- the /healthz sent when the list ran out
  end
  if (status == 302 or status == 303) and header(headers, "location") then
    ok = ok + 1
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local total_ok, total_failed, any_exhausted = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_failed = total_failed + thread:get("failed")
    any_exhausted = math.max(any_exhausted, thread:get("exhausted"))
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT logins=%d failed=%d exhausted=%d duration_us=%d p50_us=%d p99_us=%d socket=%d\n",
    total_ok, total_failed, any_exhausted, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
