-- wrk script for bench/http/run.sh. Counts every answer that is not a 200, or
-- whose body lacks a presigned URL's signature, and prints machine-readable
-- lines (prefixed "BENCH ") that bench/http/measure.py reads; a run with any
-- bad answer fails there.
--
-- Environment:
--   WRK_POST_BODY  if set, requests are POSTs with this JSON body
--   WRK_EXPECT     text every 200 body must contain (default "X-Amz-Signature")

local post_body = os.getenv("WRK_POST_BODY")
if post_body and post_body ~= "" then
  wrk.method = "POST"
  wrk.body = post_body
  wrk.headers["Content-Type"] = "application/json"
end
local expect = os.getenv("WRK_EXPECT") or "X-Amz-Signature"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  badbody = 0
  first_status = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_status == 0 then first_status = status end
  elseif not string.find(body, expect, 1, true) then
    badbody = badbody + 1
  end
end

function done(summary, latency, requests)
  local n, b, first = 0, 0, 0
  for _, t in ipairs(threads) do
    n = n + t:get("non200")
    b = b + t:get("badbody")
    if first == 0 then first = t:get("first_status") end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests %d\n", summary.requests))
  io.write(string.format("BENCH duration_us %d\n", summary.duration))
  io.write(string.format("BENCH p50_us %d\n", latency:percentile(50)))
  io.write(string.format("BENCH p99_us %d\n", latency:percentile(99)))
  io.write(string.format("BENCH non200 %d\n", n))
  io.write(string.format("BENCH badbody %d\n", b))
  io.write(string.format("BENCH first_bad_status %d\n", first))
  io.write(string.format("BENCH socket_errors %d\n", e.connect + e.read + e.write + e.timeout))
  io.write(string.format("BENCH timeouts %d\n", e.timeout))
end
