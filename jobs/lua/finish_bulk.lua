-- Record the result lines of bulk batch inputs, then ack and delete their stream entries, in one
-- atomic step, and delete each input's bytes; count them (stats, and the live slot as
-- finish.lua does). One call per model run.
-- A line is kept only while its batch runs or is being cancelled (what finished before a
-- cancel stays in the files); the feeder moves the lines into the batch's files.
-- KEYS: bulk stream, stats, live slot, then for each result: batch record, batch results list,
-- input.
-- ARGV: consumer group, "<model>|<version>", the size of the batch the model ran (0: none, or
-- counted by the interactive finish of the same run), worker name ('': none), live slot ttl_s,
-- then for each result: line, failed (0/1); then the stream entry ids to ack.
-- Returns for each result: 1 line kept, 0 dropped (its batch is gone or no longer running).
local label, batch = ARGV[2], tonumber(ARGV[3])
if batch > 0 then
  redis.call('HINCRBY', KEYS[2], 'batches|' .. label, 1)
  redis.call('HINCRBY', KEYS[2], 'batched_inputs|' .. label, batch)
end
local worker, slot, kept = ARGV[4], KEYS[3], 0
local n = (#KEYS - 3) / 3
local rcs = {}
for r = 0, n - 1 do
  local k, a = 4 + 3 * r, 6 + 2 * r
  local st = redis.call('HGET', KEYS[k], 'status')
  rcs[r + 1] = 0
  if st == 'in_progress' or st == 'cancelling' then
    redis.call('RPUSH', KEYS[k + 1], ARGV[a])
    local outcome = ARGV[a + 1] == '1' and 'failed' or 'succeeded'
    redis.call('HINCRBY', KEYS[2], 'inputs|' .. label .. '|' .. outcome, 1)
    rcs[r + 1] = 1
    kept = kept + 1
  end
  redis.call('DEL', KEYS[k + 2])
end
ack_entries(KEYS[1], ARGV[1], 6 + 2 * n)
if kept > 0 then redis.call('HINCRBY', slot, 'inputs|' .. label, kept) end
if batch > 0 and worker ~= '' then
  redis.call('HINCRBY', slot, 'batches|' .. worker, 1)
  redis.call('HINCRBY', slot, 'batch_inputs|' .. worker, batch)
end
if kept > 0 or (batch > 0 and worker ~= '') then redis.call('EXPIRE', slot, ARGV[5]) end
return rcs
