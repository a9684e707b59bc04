-- GET of the URL given to wrk with one credential header: the API key
-- (x-api-key, the default) or a dashboard session (Cookie); counts non-2xx
-- answers.
package.path = string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "?.lua;" .. package.path
require("common")

function init(args)
   wrk.headers[args[2] or "x-api-key"] = args[1]
end
