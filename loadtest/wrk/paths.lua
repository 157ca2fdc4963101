-- paths.lua: cycle through the paths given after `--` on the wrk command line,
-- e.g. `wrk -s paths.lua http://127.0.0.1:18180 -- /switch /api/users/7 /`.
-- Requests are formatted once in init(); request() only picks the next one.
-- Used by loadtest/reload.sh.

local reqs = {}
local i = 0

function init(args)
   for _, p in ipairs(args) do
      reqs[#reqs + 1] = wrk.format("GET", p)
   end
   if #reqs == 0 then
      reqs[1] = wrk.format("GET", "/")
   end
end

function request()
   i = i % #reqs + 1
   return reqs[i]
end
