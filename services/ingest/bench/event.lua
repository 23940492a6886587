-- Shared by single.lua and batch.lua: one repayment.received CloudEvent with a unique id.
-- Ids are unique per wrk thread and run (ingest would answer a repeat as a duplicate without
-- publishing it, which is not what we measure); loans cycle so keys spread over partitions.
local M = {}

local template = '{"specversion":"1.0","id":"%s-%d","source":"urn:qingshou:bench",' ..
  '"type":"repayment.received","time":"2026-03-02T10:15:00+08:00","subject":"LN-%d",' ..
  '"datacontenttype":"application/json","data":{"loan_id":"LN-%d","payment_id":"PAY-%s-%d",' ..
  '"amount":"1250.00","currency":"CNY","value_date":"2026-03-02","channel":"transfer"}}'

function M.event(prefix, n)
  local loan = n % 10000
  return string.format(template, prefix, n, loan, loan, prefix, n)
end

return M
