-- Login throughput, step 1 of 3 (preparation, not timed): GET /oauth2/start
-- on portico and record, per wrk thread, the provider URL it redirects to and
-- the login cookie it sets. Arguments: OUTPUT_PREFIX QUOTA_PER_THREAD.
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

function init(args)
  out = assert(io.open(args[1] .. id, "w"))
  quota = tonumber(args[2])
  recorded = 0
end

function response(status, headers, body)
  if recorded >= quota then
    return
  end
  local location = header(headers, "location")
  local cookie = header(headers, "set-cookie")
  if status == 302 and location and cookie then
    out:write(location, "\t", string.match(cookie, "^[^;]+"), "\n")
    recorded = recorded + 1
    if recorded >= quota then
      out:close()
      wrk.thread:stop()
    end
  end
end
