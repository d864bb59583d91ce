-- wrk script: POST consent.given facts with unique event ids and subjects.
-- Environment: LEDGER_TOKEN, LEDGER_POLICY (version), LEDGER_BATCH (events per request), LEDGER_RUN,
-- LEDGER_DELAY_MS (optional: each connection waits this long after an answer before its next
-- request, which caps the rate at connections * 1000 / (delay + latency) requests a second).
local token = os.getenv("LEDGER_TOKEN")
local policy = os.getenv("LEDGER_POLICY")
local batch = tonumber(os.getenv("LEDGER_BATCH") or "1")
local run = os.getenv("LEDGER_RUN") or "run"
local delay_ms = tonumber(os.getenv("LEDGER_DELAY_MS") or "0")
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

local function fact(n)
  local key = run .. "-" .. id .. "-" .. n
  return '{"type":"consent.given","event_id":"e-' .. key .. '","occurred_at":"'
    .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '","subject":"s-' .. key
    .. '","purposes":["marketing_email"],"policy_version":"' .. policy
    .. '","collection_method":"api"}'
end

function request()
  local parts = {}
  for i = 1, batch do
    counter = counter + 1
    parts[i] = fact(counter)
  end
  local body = batch == 1 and parts[1] or "[" .. table.concat(parts, ",") .. "]"
  return wrk.format(nil, "/v1/events", nil, body)
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "LEDGER_RESULT requests=%d errors=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f"
      .. " max_ms=%.2f\n",
    summary.requests, errors, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
