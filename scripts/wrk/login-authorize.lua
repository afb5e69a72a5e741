-- Login throughput, step 2 of 3 (preparation, not timed): follow each recorded
-- redirect to the dev OP, which approves at once, and record the callback URL
-- with the login cookie that belongs to it (matched by state, because
-- responses on different connections come back in any order).
-- Arguments: INPUT_PREFIX OUTPUT_PREFIX.
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local function header(headers, wanted)
  for name, value in pairs(headers) do
    if string.lower(name) == wanted then
      return value
    end
  end
  return nil
end

local function state_of(url)
  return string.match(url, "[?&]state=([^&]+)")
end

function init(args)
  paths = {}
  cookies = {}
  for line in io.lines(args[1] .. id) do
    local url, cookie = string.match(line, "^([^\t]+)\t(.+)$")
    local state = state_of(url)
    if state then
      table.insert(paths, (string.gsub(url, "^https?://[^/]+", "")))
      cookies[state] = cookie
    end
  end
  out = assert(io.open(args[2] .. id, "w"))
  next_index = 1
  written = 0
end

function request()
  local path = paths[next_index]
  if path == nil then
    wrk.thread:stop()
    return wrk.format("GET", "/.well-known/openid-configuration")
  end
  next_index = next_index + 1
  return wrk.format("GET", path)
end

function response(status, headers, body)
  local location = header(headers, "location")
  if status ~= 302 or location == nil then
    return
  end
  local state = state_of(location)
  local cookie = state and cookies[state]
  if cookie then
    out:write((string.gsub(location, "^https?://[^/]+", "")), "\t", cookie, "\n")
    out:flush()
    cookies[state] = nil
    written = written + 1
  end
end
