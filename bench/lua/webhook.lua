-- The receiver's own capacity: POST the URL given to wrk with a distinct
-- webhook-id on every request and a body the size of an impact event, as the
-- worker sends them (bench/receiver.py counts them like deliveries).
-- Argument after "--": a run prefix (ids stay distinct across runs).
package.path = string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "?.lua;" .. package.path
require("common")

local prefix
local counter = 0
local body = '{"type":"impact.donation_received","timestamp":"2026-12-01T00:00:00.000Z",'
   .. '"data":{"tracking_id":"U1000000001-2026-11-30T12:00:00.123Z","user_id":"U1000000001",'
   .. '"tree_planted":1,"time_utc":"2026-11-30T12:00:00.123Z","stage":"donation_received",'
   .. '"certificate_url":"/certificate/U1000000001-2026-11-30T12:00:00.123Z",'
   .. '"donation_received_on":"2026-12-01T00:00:00.000Z","metadata":{"order_id":"ord-1"},'
   .. '"padding":"' .. string.rep("x", 300) .. '"}}'

function init(args)
   prefix = (args[1] or "r") .. "-" .. (id or 1)
end

function request()
   counter = counter + 1
   return wrk.format("POST", "/hook", {
      ["Content-Type"] = "application/json",
      ["webhook-id"] = "evt_" .. prefix .. "-" .. counter,
      ["webhook-timestamp"] = "1764547200",
      ["webhook-signature"] = "v1,bench",
   }, body)
end
