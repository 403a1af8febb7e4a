-- Shared by the scripts that change a job's state (prepended to them): when the job has a webhook
-- for `event`, create its delivery (id `wid`) and make it due now, in the same atomic step as the
-- state change. The delivery keeps the job's record as it stands now (`record`: HGETALL as a JSON
-- array), so the event's body tells the job as it was when the event happened, not as it is
-- when the first attempt is made.
local function schedule_webhook(job_key, list_key, delivery_key, due_key, event, wid, now, ttl)
  local url = redis.call('HGET', job_key, 'webhook')
  if not url or url == '' then return end
  local events = ',' .. (redis.call('HGET', job_key, 'webhook_events') or 'completed') .. ','
  if not string.find(events, ',' .. event .. ',', 1, true) then return end
  if redis.call('EXISTS', delivery_key) == 1 then return end
  local job_id = redis.call('HGET', job_key, 'id')
  redis.call('HSET', delivery_key, 'id', wid, 'job', job_id, 'event', event, 'url', url,
             'status', 'pending', 'created_at', now, 'next_at', now, 'attempts', 0,
             'record', cjson.encode(redis.call('HGETALL', job_key)))
  redis.call('EXPIRE', delivery_key, ttl)
  redis.call('RPUSH', list_key, wid)
  redis.call('EXPIRE', list_key, ttl)
  redis.call('ZADD', due_key, now, wid)
end
