-- Move a batch to `status` if it is in one of `from` (comma-separated; '' = any status that is
-- not final), stamping `<status>_at`. A final status takes it off the active sets, sets how
-- long its record lives, and schedules its webhook event (`batch.<status>`), in the same
-- atomic step. Every change is published, so long-polls wake.
-- KEYS: batch, its status channel, its deliveries, the event's delivery, due set, tenant's
-- active batches, every active batch.
-- ARGV: status, now, from, final (0/1), ttl_s, delivery ttl_s, webhook id, then field, value, ...
-- Returns the status afterwards ('' when the batch is gone).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return '' end
local from = ARGV[3]
if from == '' then from = 'validating,in_progress,finalizing,cancelling' end
if not string.find(',' .. from .. ',', ',' .. st .. ',', 1, true) then return st end
local status, now = ARGV[1], ARGV[2]
redis.call('HSET', KEYS[1], 'status', status, status .. '_at', now)
for i = 8, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[4] == '1' then
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('SREM', KEYS[6], id)
  redis.call('ZREM', KEYS[7], id)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  schedule_webhook(KEYS[1], KEYS[3], KEYS[4], KEYS[5], 'batch.' .. status, ARGV[7], now, ARGV[6])
end
redis.call('PUBLISH', KEYS[2], status)
return status
