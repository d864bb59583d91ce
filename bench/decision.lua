-- wrk script: GET /v1/consent/decision for subjects recorded before, in turn.
-- Environment: LEDGER_TOKEN, LEDGER_SUBJECT_PREFIX (subjects are PREFIX0 .. PREFIX<n-1>),
-- LEDGER_SUBJECTS (n), LEDGER_PURPOSE; LEDGER_RATE and LEDGER_THREADS: questions a second over
-- all threads, paced by pace.lua.
--
-- Run it with one connection per thread (-tN -cN): each thread then knows when its one
-- connection's question was due, and records the latency from that moment (wrk2's correction
-- for coordinated omission: a question that waited for the one before it counts the wait).
local pace = require("pace")

local token = os.getenv("LEDGER_TOKEN")
local prefix = os.getenv("LEDGER_SUBJECT_PREFIX")
local subjects = tonumber(os.getenv("LEDGER_SUBJECTS") or "1")
local purpose = os.getenv("LEDGER_PURPOSE") or "marketing_email"
local schedule = pace.from_env()
local counter = 0
local thread_id = 0
local threads = {}
local due = nil

-- Per thread, read by done() through thread:get (globals only): ms from due to answered.
latencies = {}

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. token
  counter = id * 7919
end

function request()
  counter = counter + 1
  if due == nil then
    due = pace.now_ms()
  end
  local path = "/v1/consent/decision?subject=" .. prefix .. (counter % subjects)
    .. "&purpose=" .. purpose
  return wrk.format("GET", path)
end

if schedule then
  function delay()
    local slot, wait = schedule:claim(id)
    due = slot
    return wait
  end
end

function response(status, headers, body)
  if due ~= nil then
    latencies[#latencies + 1] = pace.now_ms() - due
    due = nil
  end
end

function done(summary, latency, requests)
  pace.result(summary, latency)
  pace.report("LEDGER_FROM_DUE", threads, "latencies")
end
