-- Append receipts to a letter if nobody moved it since it was read (compare-and-set on the head),
-- with the live events for them. On a single Redis both parties' events are appended here (one
-- round trip, one fsync); on Redis Cluster the sender's stream is in another slot, so the letter
-- is marked for fan-out instead (fan_out.lua copies the events, settle_fanout.lua clears the mark).
-- KEYS[1] letter hash   KEYS[2] ciphertext key   KEYS[3] due index (single Redis: the due
-- bucket; cluster: the recipient's due zset)     KEYS[4] the recipient's event stream
-- KEYS[5] single Redis: the sender's event stream; cluster: the recipient's fan-out zset
-- ARGV[1] letter id     ARGV[2] expected head   ARGV[3] new state   ARGV[4] new head
-- ARGV[5] "1" if the new state is terminal      ARGV[6] "1" to release (return and drop) the ciphertext
-- ARGV[7] retention after a terminal state (ms, 0 = keep)   ARGV[8] event stream length cap
-- ARGV[9] "both" (single Redis) | "mark" (cluster)  ARGV[10] the due index member
-- ARGV[11] n, the number of receipts; then n receipts (packed, stored as fields r<seq>), then n events (JSON), in order
-- Returns {"ok", ciphertext or ""} | {"stale", current state} | {"missing", ""}
local head = redis.call('HGET', KEYS[1], 'h')
if not head then
  return {'missing', ''}
end
if head ~= ARGV[2] then
  return {'stale', redis.call('HGET', KEYS[1], 'state')}
end
local released = ''
if ARGV[6] == '1' then
  released = redis.call('GET', KEYS[2]) or ''
  redis.call('DEL', KEYS[2])
end
local n = tonumber(ARGV[11])
local seq = tonumber(redis.call('HGET', KEYS[1], 'n'))
local both = ARGV[9] == 'both'
for i = 1, n do
  redis.call('HSET', KEYS[1], 'r' .. seq, ARGV[11 + i])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[11 + n + i])
  if both then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[11 + n + i])
  end
  seq = seq + 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'h', ARGV[4], 'n', seq)
if not both then
  redis.call('ZADD', KEYS[5], seq, ARGV[1])
end
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[10])
  local retention = tonumber(ARGV[7])
  if retention > 0 then
    redis.call('PEXPIRE', KEYS[1], retention)
    redis.call('PEXPIRE', KEYS[2], retention)
  end
end
return {'ok', released}
