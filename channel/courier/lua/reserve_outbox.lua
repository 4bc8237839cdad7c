-- On Redis Cluster, the sender's half of a send (the sender's slot), run before the recipient's
-- half (create_letter.lua): claim the request's nonce, take the sender's rate-limit token and
-- file the letter in the sender's outbox, refusing a letter id the sender already used for
-- another recipient. A party's letter ids are unique across its inbox and outbox, so an id
-- names one letter for it. Filing first is safe: readers skip outbox entries whose letter does
-- not exist (yet), and a retried send repeats this step.
-- KEYS[1] sent hash (letter id -> recipient)   KEYS[2] outbox zset
-- KEYS[3] the letter hash this id would name in the sender's own inbox   KEYS[4] the nonce key
-- KEYS[5] the sender's rate-limit bucket
-- ARGV[1] letter id   ARGV[2] recipient   ARGV[3] sent (ms)   ARGV[4] nonce lifetime (ms)
-- ARGV[5] bucket capacity (0: no limit)   ARGV[6] refill per second   ARGV[7] now (ms)
-- Returns {"new"} (filed now) | {"same"} (already filed for this recipient) | {"other"} (refused)
--       | {"replayed"} (the nonce was used before; nothing done) | {"limited", ms until a token}
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {'replayed'}
end
local capacity = tonumber(ARGV[5])
if capacity > 0 then
  local per_ms = tonumber(ARGV[6]) / 1000
  local now = tonumber(ARGV[7])
  local tokens, at = capacity, now
  local bucket = redis.call('HMGET', KEYS[5], 'tokens', 'at')
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
    redis.call('HSET', KEYS[5], 'tokens', tostring(tokens), 'at', at)
    redis.call('PEXPIRE', KEYS[5], full_in)
  else
    redis.call('DEL', KEYS[5])
  end
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'other'}
end
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  if existing == ARGV[2] then
    return {'same'}
  end
  return {'other'}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'new'}
