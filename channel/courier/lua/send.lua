-- A whole send on a single Redis, in one atomic step (one round trip, one fsync): claim the
-- request's nonce, take the sender's rate-limit token, file the sender's outbox entry, store the
-- letter (its ciphertext in a key of its own), file the recipient's inbox entry, index the
-- deadline and append both parties' live events. A replayed or rate-limited send writes
-- nothing; any other refusal writes only the nonce and the token.
-- KEYS[1] the sender's nonce key      KEYS[2] the sender's rate-limit bucket
-- KEYS[3] the sender's sent hash      KEYS[4] the sender's outbox zset
-- KEYS[5] the letter hash this id would name in the sender's own inbox
-- KEYS[6] the letter hash             KEYS[7] the ciphertext key
-- KEYS[8] the recipient's inbox zset  KEYS[9] the recipient's sent hash
-- KEYS[10] the due bucket             KEYS[11] the recipient's stream   KEYS[12] the sender's stream
-- ARGV[1] nonce lifetime (ms)  ARGV[2] bucket capacity (0: no limit)  ARGV[3] refill per second
-- ARGV[4] now (ms)    ARGV[5] letter id   ARGV[6] recipient
-- ARGV[7] packed envelope (channel/compact.py; it names the sender)   ARGV[8] seal
-- ARGV[9] ciphertext  ARGV[10] sent (ms)  ARGV[11] expires (ms)  ARGV[12] accepted receipt (packed)
-- ARGV[13] its chain hash   ARGV[14] the recipient's event   ARGV[15] the sender's event
-- ARGV[16] stream length cap   ARGV[17] the due bucket member ("recipient letter-id")
-- Returns {"created", receipt} | {"exists", first receipt} | {"conflict", ""} | {"other", ""}
--       | {"replayed", ""} | {"limited", ms until a token}
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'replayed', ''}
end
local capacity = tonumber(ARGV[2])
if capacity > 0 then
  local per_ms = tonumber(ARGV[3]) / 1000
  local now = tonumber(ARGV[4])
  local tokens, at = capacity, now
  local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  if bucket[1] then
    at = math.max(now, tonumber(bucket[2]))
    tokens = math.min(capacity, tonumber(bucket[1]) + (at - tonumber(bucket[2])) * per_ms)
  end
  if tokens < 1 then
    return {'limited', tostring(math.max(1, math.ceil((1 - tokens) / per_ms)))}
  end
  tokens = tokens - 1
  local full_in = math.ceil((capacity - tokens) / per_ms)
  if full_in > 0 then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'at', at)
    redis.call('PEXPIRE', KEYS[2], full_in)
  else
    redis.call('DEL', KEYS[2])
  end
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
-- An id names one letter for a party, across its inbox and outbox.
if redis.call('EXISTS', KEYS[5]) == 1 then
  return {'other', ''}
end
local filed = redis.call('HGET', KEYS[3], ARGV[5])
if filed and filed ~= ARGV[6] then
  return {'other', ''}
end
-- The same envelope (so the same digest, the same sender) under this id: a re-send.
local envelope = redis.call('HGET', KEYS[6], 'e')
if envelope then
  if envelope == ARGV[7] then
    return {'exists', redis.call('HGET', KEYS[6], 'r0')}
  end
  return {'conflict', ''}
end
if redis.call('HEXISTS', KEYS[9], ARGV[5]) == 1 then
  return {'conflict', ''}
end
if not filed then
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
  redis.call('ZADD', KEYS[4], ARGV[10], ARGV[5])
end
-- Short field names keep the hash small, in Redis's compact encoding (docs/store.md).
redis.call('HSET', KEYS[6], 'e', ARGV[7], 's', ARGV[8], 'state', 'accepted', 'h', ARGV[13],
  'n', 1, 'r0', ARGV[12])
redis.call('SET', KEYS[7], ARGV[9])
redis.call('ZADD', KEYS[8], ARGV[10], ARGV[5])
redis.call('ZADD', KEYS[10], ARGV[11], ARGV[17])
redis.call('XADD', KEYS[11], 'MAXLEN', '~', ARGV[16], '*', 'e', ARGV[14])
redis.call('XADD', KEYS[12], 'MAXLEN', '~', ARGV[16], '*', 'e', ARGV[15])
return {'created', ARGV[12]}
