-- Append receipts to a letter if nobody moved it since it was read (compare-and-set on the head).
-- KEYS[1] letter hash   KEYS[2] due zset
-- ARGV[1] letter id     ARGV[2] expected head   ARGV[3] new state   ARGV[4] new head
-- ARGV[5] "1" if the new state is terminal      ARGV[6] "1" to release (return and drop) the ciphertext
-- ARGV[7] retention after a terminal state (ms, 0 = keep)
-- ARGV[8..] receipts to append, in order (canonical JSON), stored as fields r:<seq>
-- Returns {"ok", ciphertext or ""} | {"stale", current state} | {"missing", ""}
local head = redis.call('HGET', KEYS[1], 'head')
if not head then
  return {'missing', ''}
end
if head ~= ARGV[2] then
  return {'stale', redis.call('HGET', KEYS[1], 'state')}
end
local released = ''
if ARGV[6] == '1' then
  released = redis.call('HGET', KEYS[1], 'ct') or ''
  redis.call('HDEL', KEYS[1], 'ct')
end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
for i = 8, #ARGV do
  redis.call('HSET', KEYS[1], 'r:' .. seq, ARGV[i])
  seq = seq + 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'head', ARGV[4], 'seq', seq)
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  local retention = tonumber(ARGV[7])
  if retention > 0 then
    redis.call('PEXPIRE', KEYS[1], retention)
  end
end
return {'ok', released}
