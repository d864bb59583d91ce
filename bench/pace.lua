-- Shared by ingest.lua and decision.lua (found through LUA_PATH, which bench/wrk_load.py sets):
-- a monotonic clock and a fixed-rate schedule, because wrk has no rate option (wrk2's -R is not
-- packaged in Debian).
--
-- A schedule gives each wrk thread's requests fixed departure slots, start + k * period, with
-- period = 1000 / (LEDGER_RATE / LEDGER_THREADS) ms. wrk calls delay() before each request after
-- a connection's first; delay() claims the next slot and waits until it. When the server falls
-- behind, slots in the past leave at once (no wait), so the offered rate is held as long as there
-- are connections free: the load is open loop up to the connection count, as in wrk2.
--
-- CLOCK_MONOTONIC is the clock of Python's time.monotonic() on Linux, so the suite can name a
-- measuring window in the same clock (LEDGER_WINDOW_FROM_MS, LEDGER_WINDOW_TO_MS).
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } ledger_timespec;
int clock_gettime(int clock_id, ledger_timespec *tp);
]])

local CLOCK_MONOTONIC = 1
local timespec = ffi.new("ledger_timespec")

local pace = {}

function pace.now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

-- The schedule of one thread, or nil when LEDGER_RATE is unset (wrk's closed loop, no delay).
function pace.from_env()
  local rate = tonumber(os.getenv("LEDGER_RATE") or "0")
  if rate <= 0 then
    return nil
  end
  local threads = tonumber(os.getenv("LEDGER_THREADS") or "1")
  local schedule = { period = 1000 * threads / rate, next = nil }
  -- The next free slot and how many ms to wait for it (0 when it is already past). Thread
  -- `thread_id` (0 .. threads - 1) starts its schedule that many threads' share of a period
  -- late, so the threads' requests interleave instead of leaving together in bursts.
  function schedule:claim(thread_id)
    local now = pace.now_ms()
    if self.next == nil then
      self.next = now + ((thread_id or 0) % threads) * self.period / threads
    end
    local slot = self.next
    self.next = slot + self.period
    return slot, math.max(0, math.ceil(slot - now))
  end
  return schedule
end

-- The measuring window in CLOCK_MONOTONIC ms, or nil, nil.
function pace.window()
  return tonumber(os.getenv("LEDGER_WINDOW_FROM_MS") or ""),
    tonumber(os.getenv("LEDGER_WINDOW_TO_MS") or "")
end

-- One line `NAME n=.. p50_ms=.. p99_ms=.. p999_ms=.. max_ms=..` of the latencies (ms) that
-- each thread kept in its global table `field`, gathered through thread:get.
function pace.report(name, threads, field)
  local all = {}
  for _, thread in ipairs(threads) do
    local mine = thread:get(field) or {}
    for i = 1, #mine do
      all[#all + 1] = mine[i]
    end
  end
  table.sort(all)
  local function at(p)
    if #all == 0 then
      return 0
    end
    return all[math.min(#all, math.floor(p * #all) + 1)]
  end
  io.write(string.format(
    "%s n=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
    name, #all, at(0.5), at(0.99), at(0.999), all[#all] or 0))
end

-- The line the suite parses (bench/wrk_load.py), from wrk's own summary and latency histogram
-- (latencies from each request's send: closed loop).
function pace.result(summary, latency)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "LEDGER_RESULT requests=%d errors=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f"
      .. " max_ms=%.2f\n",
    summary.requests, errors, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end

return pace
