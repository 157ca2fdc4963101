-- routes10k: cycle through paths that hit the first, middle and last of the
-- 9,999 exact rules and the catch-all after them (a miss of every exact rule).
-- Requests are formatted once in init(); request() only picks the next one,
-- so the Lua cost per request is one call and a table index.

local paths = { "/r/1", "/r/5000", "/r/9999", "/miss/after-all-exact-rules" }
local reqs = {}
local i = 0

function init(args)
   for k, p in ipairs(paths) do
      reqs[k] = wrk.format("GET", p)
   end
end

function request()
   i = i % #reqs + 1
   return reqs[i]
end
