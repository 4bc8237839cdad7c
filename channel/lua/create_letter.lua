-- On Redis Cluster, the recipient's half of a send (the recipient's slot), idempotent on the
-- letter id: store the letter (its ciphertext in a key of its own), file the inbox entry, index
-- the deadline, append the recipient's live event and mark the letter for fan-out of its events
-- to the sender's stream (another slot: fan_out.lua, run by the sweeper for a send).
-- KEYS[1] letter hash   KEYS[2] ciphertext key   KEYS[3] inbox zset   KEYS[4] due zset
-- KEYS[5] the recipient's sent hash: an id the recipient used for a letter of its own is taken
-- KEYS[6] the recipient's event stream      KEYS[7] the recipient's fan-out zset
-- ARGV[1] letter id     ARGV[2] envelope digest ARGV[3] canonical envelope  ARGV[4] seal
-- ARGV[5] ciphertext    ARGV[6] sender          ARGV[7] sent (ms)           ARGV[8] expires (ms)
-- ARGV[9] accepted receipt (canonical JSON)     ARGV[10] its chain hash
-- ARGV[11] the recipient's event (JSON)         ARGV[12] event stream length cap
-- Returns {"created", receipt} | {"exists", first receipt} | {"conflict", ""}
local digest = redis.call('HGET', KEYS[1], 'digest')
if digest then
  if digest == ARGV[2] then
    return {'exists', redis.call('HGET', KEYS[1], 'r:0')}
  end
  return {'conflict', ''}
end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then
  return {'conflict', ''}
end
redis.call('HSET', KEYS[1],
  'digest', ARGV[2], 'env', ARGV[3], 'seal', ARGV[4], 'sender', ARGV[6],
  'exp', ARGV[8], 'state', 'accepted', 'head', ARGV[10], 'seq', 1, 'r:0', ARGV[9])
redis.call('SET', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[12], '*', 'e', ARGV[11])
redis.call('ZADD', KEYS[7], 1, ARGV[1])
return {'created', ARGV[9]}
