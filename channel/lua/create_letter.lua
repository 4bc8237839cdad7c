-- Accept a sealed letter into its recipient's slot, idempotently on the letter id.
-- KEYS[1] letter hash   KEYS[2] receipts list   KEYS[3] inbox zset   KEYS[4] due zset
-- KEYS[5] the recipient's sent hash: an id the recipient used for a letter of its own is taken
-- ARGV[1] letter id     ARGV[2] envelope digest ARGV[3] canonical envelope  ARGV[4] seal
-- ARGV[5] ciphertext    ARGV[6] sender          ARGV[7] sent (ms)           ARGV[8] expires (ms)
-- ARGV[9] accepted receipt (canonical JSON)     ARGV[10] its chain hash
-- Returns {"created", receipt} | {"exists", first receipt} | {"conflict", ""}
local digest = redis.call('HGET', KEYS[1], 'digest')
if digest then
  if digest == ARGV[2] then
    return {'exists', redis.call('LINDEX', KEYS[2], 0)}
  end
  return {'conflict', ''}
end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then
  return {'conflict', ''}
end
redis.call('HSET', KEYS[1],
  'digest', ARGV[2], 'env', ARGV[3], 'seal', ARGV[4], 'ct', ARGV[5], 'sender', ARGV[6],
  'exp', ARGV[8], 'state', 'accepted', 'head', ARGV[10], 'seq', 1)
redis.call('RPUSH', KEYS[2], ARGV[9])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
return {'created', ARGV[9]}
