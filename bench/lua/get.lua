-- GET of the URL given to wrk with the API key as the only argument; counts
-- non-2xx answers.
package.path = string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "?.lua;" .. package.path
require("common")

function init(args)
   wrk.headers["x-api-key"] = args[1]
end
