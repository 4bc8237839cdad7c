-- Append receipts to a letter if nobody moved it since it was read (compare-and-set on the head),
-- with the recipient's live events for them, and mark the letter for fan-out to its sender.
-- KEYS[1] letter hash   KEYS[2] due zset   KEYS[3] the recipient's event stream
-- KEYS[4] the recipient's fan-out zset
-- ARGV[1] letter id     ARGV[2] expected head   ARGV[3] new state   ARGV[4] new head
-- ARGV[5] "1" if the new state is terminal      ARGV[6] "1" to release (return and drop) the ciphertext
-- ARGV[7] retention after a terminal state (ms, 0 = keep)   ARGV[8] event stream length cap
-- ARGV[9] n, the number of receipts; then n receipts (canonical JSON, stored as fields r:<seq>),
-- then n events (JSON), in order
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
local n = tonumber(ARGV[9])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
for i = 1, n do
  redis.call('HSET', KEYS[1], 'r:' .. seq, ARGV[9 + i])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[9 + n + i])
  seq = seq + 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'head', ARGV[4], 'seq', seq)
redis.call('ZADD', KEYS[4], seq, ARGV[1])
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  local retention = tonumber(ARGV[7])
  if retention > 0 then
    redis.call('PEXPIRE', KEYS[1], retention)
  end
end
return {'ok', released}
