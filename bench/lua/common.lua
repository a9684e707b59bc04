-- Shared by post.lua and get.lua: per-thread counts of non-2xx answers, and a
-- report that bench/load.py reads from the line starting with "BENCH ".
-- Each wrk thread runs its own Lua state; setup() runs in the main state and
-- keeps a handle on every thread so done() can add their counters up.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

non2xx = 0
first_error = ""

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_error == "" then
         first_error = status .. " " .. string.sub(body or "", 1, 300)
      end
   end
end

function done(summary, latency, requests)
   local bad, first = 0, ""
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
      local e = t:get("first_error") or ""
      if first == "" then first = e end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,'
      .. '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
   if first ~= "" then
      io.write("BENCH_FIRST_ERROR " .. string.gsub(first, "\n", " ") .. "\n")
   end
end
