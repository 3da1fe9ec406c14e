-- Fixed rate: requests go out on a global schedule of BENCH_RATE per second, whatever the
-- latency, as long as one of the connections is free (so keep them plentiful).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local interval_ms = 1000 / tonumber(os.getenv("BENCH_RATE"))
local next_slot = nil

-- wrk asks before each request how many whole milliseconds to wait: take the next free
-- slot of the schedule; a slot already past goes out at once (the schedule does not slip).
function delay()
  local now = now_ms()
  if next_slot == nil then
    next_slot = now
  end
  local slot = next_slot
  next_slot = next_slot + interval_ms
  local wait = slot - now
  if wait <= 0 then
    return 0
  end
  return math.floor(wait + 0.5)
end
