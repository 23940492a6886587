-- wrk -s batch.lua http://127.0.0.1:PORT/v1/events/batch : QS_BENCH_BATCH events per request.
package.path = package.path .. ";" .. (os.getenv("QS_BENCH_LUA_DIR") or ".") .. "/?.lua"
local ce = require("event")

local counter = 0
local size = tonumber(os.getenv("QS_BENCH_BATCH") or "1000")
-- Bodies are built once per thread as templates split where the request number goes, and a
-- request joins the pieces around its number: formatting 1,000 events in Lua per request
-- (or a gsub over the body) took a tenth of this machine's CPU from the server under test.
-- Template t holds loans t*size .. t*size+size-1, so requests still cycle over 10,000 loans,
-- and every id (prefix-<request>-<n>) is unique.
local templates = {}

-- wrk gives each thread its own Lua state: number them so their ids never collide
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  local prefix = string.format("%s-%d-%d", os.getenv("QS_BENCH_RUN") or "run", os.time(),
                               tid or 0)
  for t = 0, math.max(1, math.floor(10000 / size)) - 1 do
    local parts = {}
    for i = 1, size do
      parts[i] = ce.event(prefix .. "-\1", t * size + i)
    end
    local body, pieces = "[" .. table.concat(parts, ",") .. "]", {}
    for piece in (body .. "\1"):gmatch("([^\1]*)\1") do
      pieces[#pieces + 1] = piece
    end
    templates[#templates + 1] = pieces
  end
end

local headers = {
  ["Content-Type"] = "application/cloudevents-batch+json",
  ["Authorization"] = "Bearer " .. (os.getenv("QS_BENCH_KEY") or "qs-dev-core"),
}

request = function()
  counter = counter + 1
  local pieces, number = templates[counter % #templates + 1], tostring(counter)
  local out, n = {}, #pieces
  for i = 1, n - 1 do
    out[2 * i - 1] = pieces[i]
    out[2 * i] = number
  end
  out[2 * n - 1] = pieces[n]
  return wrk.format("POST", nil, headers, table.concat(out))
end
