-- wrk script for scripts/bench.sh. Arguments after `--`:
--   uniform CODES_FILE        GET /{code}, codes drawn uniformly from the file
--   zipf CODES_FILE [S]       GET /{code}, the k-th code of the file drawn with weight 1/k^S
--   create                    POST /api/v1/links with a fresh JSON body each time
-- `done` prints one line `BENCH_RESULT {json}`: requests, seconds, latency percentiles (µs)
-- and errors (wrk counts any status >= 400 as an error).

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

local mode, requests, cdf, count
local serial = 0

local function load_requests(path)
  local list = {}
  local file = assert(io.open(path, "r"), "cannot open codes file " .. tostring(path))
  for line in file:lines() do
    if #line > 0 then
      -- Built once here, so each request costs a table lookup, not a string format.
      list[#list + 1] = wrk.format("GET", "/" .. line)
    end
  end
  file:close()
  assert(#list > 0, "no codes in " .. path)
  return list
end

-- Cumulative weights of a Zipf distribution over ranks 1..n, normalised to 1.
local function zipf_cdf(n, s)
  local c, sum = {}, 0
  for k = 1, n do
    sum = sum + 1 / (k ^ s)
    c[k] = sum
  end
  for k = 1, n do
    c[k] = c[k] / sum
  end
  return c
end

-- The smallest rank whose cumulative weight reaches u (binary search).
local function zipf_rank(u)
  local lo, hi = 1, count
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function init(args)
  mode = args[1] or "uniform"
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  if mode == "create" then
    wrk.method = "POST"
    wrk.path = "/api/v1/links"
    wrk.headers["Content-Type"] = "application/json"
    return
  end
  requests = load_requests(args[2])
  count = #requests
  if mode == "zipf" then
    cdf = zipf_cdf(count, tonumber(args[3] or "1.0"))
  elseif mode ~= "uniform" then
    error("unknown mode " .. mode)
  end
end

function request()
  if mode == "uniform" then
    return requests[math.random(count)]
  elseif mode == "zipf" then
    return requests[zipf_rank(math.random())]
  end
  serial = serial + 1
  local body = string.format('{"url":"https://example.org/bench/%d/%d/%d"}',
    thread_id or 0, os.time(), serial)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"seconds":%.3f,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
