-- Claim due webhook deliveries by pushing their due time forward by a lease.
-- KEYS: due set. ARGV: now, lease_s, max count, delivery key prefix.
-- Returns [webhook id, lease token, ...] for the deliveries claimed.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, wid in ipairs(due) do
  local token = ARGV[1] .. ':' .. wid
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), wid)
  redis.call('HSET', ARGV[4] .. wid, 'lease', token)
  table.insert(out, wid)
  table.insert(out, token)
end
return out
