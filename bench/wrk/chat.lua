-- wrk script for the Hypereal load benchmark: POST one chat completion per request.
--
-- Environment (set by bench/run.py):
--   BENCH_BODY        the JSON request body (required)
--   BENCH_KEY         the API key, sent as "Authorization: Bearer ..." (optional)
--   BENCH_PATH        request path (default /v1/chat/completions)
--
-- Prints one line "BENCHJSON {...}" with requests sent/completed, errors and latency percentiles
-- (microseconds), which bench/run.py parses. bench/run.py ends a run early with SIGINT, after
-- which wrk still reports.

local body = os.getenv("BENCH_BODY") or error("BENCH_BODY is required")
local key = os.getenv("BENCH_KEY") or ""
local path = os.getenv("BENCH_PATH") or "/v1/chat/completions"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sent = 0        -- requests written (per thread; read back in done())
  local headers = {["Host"] = "127.0.0.1", ["Content-Type"] = "application/json"}
  if key ~= "" then
    headers["Authorization"] = "Bearer " .. key
  end
  req = wrk.format("POST", path, headers, body)
end

function request()
  sent = sent + 1
  return req
end

function done(summary, latency, requests)
  local total_sent = 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
  end
  -- wrk calls request() once on the first thread to verify the request, before any connection:
  -- that call sends nothing, so it is not counted.
  total_sent = total_sent - 1
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"sent":%d,"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"min":%d,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    total_sent, summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
