-- Take or renew a lease: the key holds its owner until it expires.
-- KEYS: lease. ARGV: owner, ttl_ms. Returns 1 when `owner` holds it afterwards, else 0.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
