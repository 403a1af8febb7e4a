-- Enqueue a job: write its record and one stream entry per input, after the SETs (in the same
-- transaction) that wrote the inputs' bytes: bytes never pass through Lua, which hashes every
-- byte of a string. The version is resolved here, in the same atomic step as the write: once the
-- workers switch the default to a new version, no job can still land on the old one. A refused
-- job's inputs are deleted again. The job joins its tenant's list (GET /v1/jobs), which is
-- trimmed here to its newest `list max` and to what has not outlived the job TTL.
-- KEYS: job, routing, stats, tenant jobs, each input's key[, idempotency].
-- ARGV: id, model, pinned version ('' = the default), created_at, max_backlog, ttl_s, n, request
-- digest, idempotency ttl_s, fallback version, stream key prefix, list max, n_fields, field,
-- value, ...
-- Returns {'ok', version}, {'full'}, {'noversion'} or {'dup', "<job id> <digest>"}.
local n = tonumber(ARGV[7])
local function refuse(reply, reason)
  for i = 5, 4 + n do redis.call('DEL', KEYS[i]) end
  if reason then redis.call('HINCRBY', KEYS[3], 'refused|' .. ARGV[2] .. '|' .. reason, 1) end
  return reply
end
local idempotency = KEYS[5 + n]
if idempotency then
  local prior = redis.call('GET', idempotency)
  if prior then return refuse({'dup', prior}) end
end
local version = ARGV[3]
if version == '' then version = redis.call('HGET', KEYS[2], 'default') or ARGV[10] end
if version == '' then return refuse({'noversion'}, 'no_version') end
local stream = ARGV[11] .. version
if redis.call('XLEN', stream) + n > tonumber(ARGV[5]) then
  return refuse({'full'}, 'backlog_full')
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'model', ARGV[2], 'version', version,
           'status', 'queued', 'created_at', ARGV[4], 'n_inputs', n, 'n_done', 0, 'n_failed', 0)
local n_fields = tonumber(ARGV[13])
for i = 1, n_fields do
  redis.call('HSET', KEYS[1], ARGV[12 + 2 * i], ARGV[13 + 2 * i])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
for i = 0, n - 1 do
  redis.call('XADD', stream, '*', 'job', ARGV[1], 'idx', i, 't', ARGV[4])
end
if idempotency then
  redis.call('SET', idempotency, ARGV[1] .. ' ' .. ARGV[8], 'EX', ARGV[9])
end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (tonumber(ARGV[4]) - tonumber(ARGV[6])))
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -1 - tonumber(ARGV[12]))
redis.call('EXPIRE', KEYS[4], ARGV[6])  -- an idle tenant's list goes with its last job
redis.call('HINCRBY', KEYS[3], 'submitted|' .. ARGV[2] .. '|' .. version, 1)
return {'ok', version}
