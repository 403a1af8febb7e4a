-- Cancel a job. KEYS: job, finished channel, deliveries, completed delivery, due, stats.
-- ARGV: now, ttl_s, delivery ttl_s, completed webhook id.
-- Returns -1 gone, 0 already final, 1 canceled.
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'completed_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local model = redis.call('HGET', KEYS[1], 'model') or ''
redis.call('HINCRBY', KEYS[6], 'jobs|' .. model .. '|canceled', 1)
schedule_webhook(KEYS[1], KEYS[3], KEYS[4], KEYS[5], 'completed', ARGV[4], ARGV[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], 'canceled')
return 1
