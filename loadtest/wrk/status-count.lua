-- Counts responses by status code and prints `status NNN: COUNT` lines at the
-- end (summarize.py reads them). Used by the backend-fail scenario, where
-- wrk's single "Non-2xx or 3xx responses" number hides 502 vs 503 vs 504.
-- The response() callback costs wrk some throughput: do not use it for
-- scenarios whose req/s matter.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   counts = {}
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      local c = t:get("counts")
      if c then
         for status, n in pairs(c) do
            total[status] = (total[status] or 0) + n
         end
      end
   end
   for status, n in pairs(total) do
      io.write(string.format("status %d: %d\n", status, n))
   end
end
