-- Mark a batch's jobs running. KEYS: due, then for each job: job, deliveries, started delivery.
-- ARGV: now, model version, delivery ttl_s, then each job's started webhook id.
-- Returns, for each job in turn: its status afterwards ('' when the job is gone), and the output
-- form the job asked for.
local now, version, ttl = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 2, #KEYS, 3 do
  local job = KEYS[i]
  local st = redis.call('HGET', job, 'status')
  if st == 'queued' then
    redis.call('HSET', job, 'status', 'running', 'started_at', now, 'version', version)
    schedule_webhook(job, KEYS[i + 1], KEYS[i + 2], KEYS[1], 'started', ARGV[3 + (i + 1) / 3],
                     now, ttl)
    st = 'running'
  end
  out[#out + 1] = st or ''
  out[#out + 1] = redis.call('HGET', job, 'output') or ''
end
return out
