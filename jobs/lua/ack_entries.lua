-- Shared by the finish scripts (prepended to them): ack and delete stream entries, the ids being
-- ARGV[first] to the end, in slices (unpack has a limit on how many values it spreads).
local function ack_entries(stream, group, first)
  for i = first, #ARGV, 500 do
    local last = math.min(i + 499, #ARGV)
    redis.call('XACK', stream, group, unpack(ARGV, i, last))
    redis.call('XDEL', stream, unpack(ARGV, i, last))
  end
end
