-- wrk script: GET /v1/consent/decision for subjects recorded before, in turn.
-- Environment: LEDGER_TOKEN, LEDGER_SUBJECT_PREFIX (subjects are PREFIX0 .. PREFIX<n-1>),
-- LEDGER_SUBJECTS (n), LEDGER_PURPOSE, LEDGER_DELAY_MS (optional: each connection waits this
-- long after an answer before asking again, so the questions come at a bounded rate).
local token = os.getenv("LEDGER_TOKEN")
local prefix = os.getenv("LEDGER_SUBJECT_PREFIX")
local subjects = tonumber(os.getenv("LEDGER_SUBJECTS") or "1")
local purpose = os.getenv("LEDGER_PURPOSE") or "marketing_email"
local delay_ms = tonumber(os.getenv("LEDGER_DELAY_MS") or "0")
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. token
  counter = id * 7919
end

function request()
  counter = counter + 1
  local path = "/v1/consent/decision?subject=" .. prefix .. (counter % subjects)
    .. "&purpose=" .. purpose
  return wrk.format("GET", path)
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
