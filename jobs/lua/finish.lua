-- Record each input's result, then ack and delete the batch's stream entries, in one atomic step,
-- and delete each input's bytes; count them (stats, and the live slot that GET /v1/stats and
-- /v1/workers read: one HINCRBY per field this call changed, not per job). One call per batch.
-- KEYS: due, stream, stats, live slot, then for each result: job, finished channel, deliveries,
-- started delivery, completed delivery, input.
-- ARGV: now, ttl_s, delivery ttl_s, consumer group, "<model>|<version>", the size of the batch the
-- model ran (0: none), the largest record a finish message carries, worker name ('': none), live
-- slot ttl_s, then for each result: idx, output json, failed (0/1), error, started webhook id,
-- completed webhook id; then the stream entry ids to ack.
-- Returns for each result: -1 job gone, 0 duplicate or job already final, 1 recorded, 2 recorded
-- and job finished.
local live_inputs, live_jobs, live_latency = 0, 0, {}
local function finish(job, channel, list, started, completed, idx, payload, failed, err,
                      started_wid, completed_wid, now, ttl, dttl, label, record_max)
  local st = redis.call('HGET', job, 'status')
  if not st then return -1 end
  if st ~= 'queued' and st ~= 'running' then return 0 end
  -- A queued job holds no result yet, so this input is new: start the job before recording
  -- it, so that the started event's record has no result in it.
  if st == 'queued' then
    redis.call('HSET', job, 'status', 'running', 'started_at', now)
    schedule_webhook(job, list, started, KEYS[1], 'started', started_wid, now, dttl)
  end
  if redis.call('HSETNX', job, 'out:' .. idx, payload) == 0 then return 0 end
  local outcome = failed == '1' and 'failed' or 'succeeded'
  redis.call('HINCRBY', KEYS[3], 'inputs|' .. label .. '|' .. outcome, 1)
  live_inputs = live_inputs + 1
  if failed == '1' then
    redis.call('HINCRBY', job, 'n_failed', 1)
    redis.call('HSETNX', job, 'first_error', err)
  end
  local done = redis.call('HINCRBY', job, 'n_done', 1)
  local n = tonumber(redis.call('HGET', job, 'n_inputs'))
  if done < n then return 1 end
  local n_failed = tonumber(redis.call('HGET', job, 'n_failed'))
  local status = 'succeeded'
  if n_failed > 0 then
    status = 'failed'
    local first = redis.call('HGET', job, 'first_error')
    if n == 1 then
      redis.call('HSET', job, 'error', first)
    else
      redis.call('HSET', job, 'error',
                 string.format('%d of %d inputs failed; first error: %s', n_failed, n, first))
    end
  end
  redis.call('HSET', job, 'status', status, 'completed_at', now)
  redis.call('EXPIRE', job, ttl)
  local got = redis.call('HMGET', job, 'model', 'created_at')
  local model = got[1] or ''
  -- Submit-to-finish latency, in buckets of a quarter doubling (jobs/live.py reads them).
  local ms = math.max((tonumber(now) - (tonumber(got[2]) or tonumber(now))) * 1000, 1)
  local bucket = math.floor(4 * math.log(ms) / math.log(2))
  live_latency[bucket] = (live_latency[bucket] or 0) + 1
  live_jobs = live_jobs + 1
  redis.call('HINCRBY', KEYS[3], 'jobs|' .. model .. '|' .. status, 1)
  schedule_webhook(job, list, completed, KEYS[1], 'completed', completed_wid, now, dttl)
  -- The final record rides with the message, so a waiter need not read it back; past
  -- record_max bytes, only the status (every API process receives every message).
  local record = cjson.encode(redis.call('HGETALL', job))
  if #record > record_max then record = status end
  redis.call('PUBLISH', channel, record)
  return 2
end

local now, ttl, dttl, label, batch = ARGV[1], ARGV[2], ARGV[3], ARGV[5], tonumber(ARGV[6])
local record_max, worker, slot = tonumber(ARGV[7]), ARGV[8], KEYS[4]
if batch > 0 then
  redis.call('HINCRBY', KEYS[3], 'batches|' .. label, 1)
  redis.call('HINCRBY', KEYS[3], 'batched_inputs|' .. label, batch)
end
local n = (#KEYS - 4) / 6
local rcs = {}
for r = 0, n - 1 do
  local k, a = 5 + 6 * r, 10 + 6 * r
  rcs[r + 1] = finish(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
                      ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5],
                      now, ttl, dttl, label, record_max)
  redis.call('DEL', KEYS[k + 5])
end
ack_entries(KEYS[2], ARGV[4], 10 + 6 * n)
if live_inputs > 0 then redis.call('HINCRBY', slot, 'inputs|' .. label, live_inputs) end
if live_jobs > 0 then redis.call('HINCRBY', slot, 'jobs|' .. label, live_jobs) end
for bucket, count in pairs(live_latency) do
  redis.call('HINCRBY', slot, 'lat|' .. label .. '|' .. bucket, count)
end
if batch > 0 and worker ~= '' then
  redis.call('HINCRBY', slot, 'batches|' .. worker, 1)
  redis.call('HINCRBY', slot, 'batch_inputs|' .. worker, batch)
end
if live_inputs > 0 or (batch > 0 and worker ~= '') then redis.call('EXPIRE', slot, ARGV[9]) end
return rcs
