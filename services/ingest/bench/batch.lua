-- wrk -s batch.lua http://127.0.0.1:PORT/v1/events/batch : QS_BENCH_BATCH events per request.
package.path = package.path .. ";" .. (os.getenv("QS_BENCH_LUA_DIR") or ".") .. "/?.lua"
local ce = require("event")

local counter = 0
local size = tonumber(os.getenv("QS_BENCH_BATCH") or "1000")
local prefix = "unset"

-- wrk gives each thread its own Lua state: number them so their ids never collide
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  prefix = string.format("%s-%d-%d", os.getenv("QS_BENCH_RUN") or "run", os.time(), tid or 0)
end
local headers = {
  ["Content-Type"] = "application/cloudevents-batch+json",
  ["Authorization"] = "Bearer " .. (os.getenv("QS_BENCH_KEY") or "qs-dev-core"),
}

request = function()
  local parts = {}
  for i = 1, size do
    counter = counter + 1
    parts[i] = ce.event(prefix, counter)
  end
  return wrk.format("POST", nil, headers, "[" .. table.concat(parts, ",") .. "]")
end
