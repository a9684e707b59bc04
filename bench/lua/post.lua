-- POST /v1/plant_tree with a distinct customer_email, metadata and
-- Idempotency-Key on every request (an order webhook per checkout).
-- Arguments after "--": API key (or @file: one key per line, used in turn, for
-- many accounts writing at once), run prefix, target rate per thread in
-- requests/second (0 = as fast as the server answers).
package.path = string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "?.lua;" .. package.path
require("common")

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local keys, prefix, interval, next_slot
local counter = 0

function init(args)
   keys = {}
   if string.sub(args[1], 1, 1) == "@" then
      for line in io.lines(string.sub(args[1], 2)) do
         if line ~= "" then keys[#keys + 1] = line end
      end
   else
      keys[1] = args[1]
   end
   prefix = args[2] .. "-" .. (id or 1)
   local rate = tonumber(args[3] or "0")
   if rate > 0 then
      interval = 1000 / rate
   else
      delay = nil -- closed loop: the next request leaves as soon as one returns
   end
end

-- Paced mode: each request claims the next slot of an even schedule for this
-- thread and waits for it; a late slot leaves at once, so the schedule (and
-- not the server) sets the offered rate.
function delay()
   local now = now_ms()
   if next_slot == nil then next_slot = now end
   local slot = next_slot
   next_slot = next_slot + interval
   if slot <= now then return 0 end
   return slot - now
end

function request()
   counter = counter + 1
   local n = prefix .. "-" .. counter
   local body = '{"amount":1,"customer_email":"c' .. n .. '@shop.example",'
      .. '"metadata":{"order_id":"' .. n .. '","channel":"checkout"}}'
   return wrk.format("POST", "/v1/plant_tree", {
      ["Content-Type"] = "application/json",
      ["x-api-key"] = keys[counter % #keys + 1],
      ["Idempotency-Key"] = n,
   }, body)
end
