-- wrk script: POST consent.given facts with unique event ids and subjects.
-- Environment: LEDGER_TOKEN, LEDGER_POLICY (version), LEDGER_BATCH (events per request), LEDGER_RUN;
-- optional:
--   LEDGER_RATE, LEDGER_THREADS: requests a second over all threads, paced by pace.lua;
--   LEDGER_WINDOW_FROM_MS, LEDGER_WINDOW_TO_MS: count the answers that arrive in this
--     CLOCK_MONOTONIC window;
--   LEDGER_COUNT_STATUS=1: count answers by status (503 is the ledger pushing back);
--   LEDGER_ONE_CONNECTION=1 (run with -tN -cN): each thread times its one connection's
--     requests itself, accepted (2xx) and refused (503) apart;
--   LEDGER_RETRY_AFTER=1: after a 503, wait what its Retry-After says before the next request,
--     as a well-behaved client does.
local pace = require("pace")

local token = os.getenv("LEDGER_TOKEN")
local policy = os.getenv("LEDGER_POLICY")
local batch = tonumber(os.getenv("LEDGER_BATCH") or "1")
local run = os.getenv("LEDGER_RUN") or "run"
local window_from, window_to = pace.window()
local count_status = os.getenv("LEDGER_COUNT_STATUS") == "1"
local one_connection = os.getenv("LEDGER_ONE_CONNECTION") == "1"
local retry_after = os.getenv("LEDGER_RETRY_AFTER") == "1"
local schedule = pace.from_env()
local counter = 0
local thread_id = 0
local threads = {}
local sent_at = nil
local backoff_ms = 0

-- Per thread, read by done() through thread:get (globals only).
window_ok = 0
window_bad = 0
status_2xx = 0
status_503 = 0
status_other = 0
accepted = {}
refused = {}

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
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
  local formatted = wrk.format(nil, "/v1/events", nil, body)
  if one_connection then
    sent_at = pace.now_ms()
  end
  return formatted
end

if schedule or retry_after then
  function delay()
    local wait = 0
    if schedule then
      local _, due_in = schedule:claim(id)
      wait = due_in
    end
    if backoff_ms > 0 then
      wait = math.max(wait, backoff_ms)
      backoff_ms = 0
    end
    return wait
  end
end

if window_from or count_status or one_connection or retry_after then
  function response(status, headers, body)
    local now = pace.now_ms()
    local ok = status >= 200 and status < 300
    if ok then
      status_2xx = status_2xx + 1
    elseif status == 503 then
      status_503 = status_503 + 1
      local wait = tonumber(headers["Retry-After"] or headers["retry-after"] or "")
      if retry_after and wait then
        backoff_ms = 1000 * wait
      end
    else
      status_other = status_other + 1
    end
    if one_connection and sent_at then
      if ok then
        accepted[#accepted + 1] = now - sent_at
      elseif status == 503 then
        refused[#refused + 1] = now - sent_at
      end
      sent_at = nil
    end
    if window_from and now >= window_from and now < window_to then
      if ok then
        window_ok = window_ok + 1
      else
        window_bad = window_bad + 1
      end
    end
  end
end

function done(summary, latency, requests)
  pace.result(summary, latency)
  local sums = { window_ok = 0, window_bad = 0, status_2xx = 0, status_503 = 0, status_other = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(sums) do
      sums[name] = sums[name] + (thread:get(name) or 0)
    end
  end
  io.write(string.format(
    "LEDGER_COUNTS window_ok=%d window_bad=%d status_2xx=%d status_503=%d status_other=%d\n",
    sums.window_ok, sums.window_bad, sums.status_2xx, sums.status_503, sums.status_other))
  if one_connection then
    pace.report("LEDGER_ACCEPTED", threads, "accepted")
    pace.report("LEDGER_REFUSED", threads, "refused")
  end
end
