-- Admit a signed request: refuse a replayed nonce first, then take tokens from the party's token
-- bucket (the per-party rate limit), so a replay never spends its signer's tokens. A full bucket
-- is no key.
-- KEYS[1] bucket hash (fields: tokens, at)   KEYS[2] the request's nonce key (optional)
-- ARGV[1] capacity (the burst; 0: no limit)   ARGV[2] refill, tokens per second   ARGV[3] now (ms)
-- ARGV[4] cost, in tokens (at most the capacity)
-- ARGV[5] with KEYS[2]: how long to remember the nonce (ms), or 0 to only look at it (the send
--         script claims it itself, with the letter)
-- Returns {1, 0} when admitted | {0, ms until there will be enough tokens} | {-1, 0} replayed
-- A refusal writes nothing. The key expires when the bucket would be full again, so an idle
-- party costs no memory. `at` never goes back, so a worker whose clock lags grants no extra.
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return {-1, 0}
end
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2]) / 1000
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if capacity > 0 then
  local tokens, at = capacity, now
  local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  if bucket[1] then
    at = math.max(now, tonumber(bucket[2]))
    tokens = math.min(capacity, tonumber(bucket[1]) + (at - tonumber(bucket[2])) * per_ms)
  end
  if tokens < cost then
    return {0, math.max(1, math.ceil((cost - tokens) / per_ms))}
  end
  tokens = tokens - cost
  local full_in = math.ceil((capacity - tokens) / per_ms)
  if full_in > 0 then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', at)
    redis.call('PEXPIRE', KEYS[1], full_in)
  else
    redis.call('DEL', KEYS[1])
  end
end
if KEYS[2] and tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
end
return {1, 0}
