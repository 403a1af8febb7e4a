-- Create a batch unless its tenant already has `max_active` batches that are not final.
-- KEYS: batch, tenant's batches, tenant's active batches, every active batch.
-- ARGV: id, created_at, max_active, then field, value, ...
-- Returns 1 created, 0 refused (the tenant's limit).
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return 1
