-- KEYS: delivery. ARGV: token. 1 when this claim is still current (then it is used up).
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease', '')
return 1
