-- Accept a sealed letter into its recipient's slot, idempotently on the letter id.
-- The letter's receipts live in its own hash (fields r:0, r:1, ...): one key per letter.
-- The recipient's live event is written here too, and the letter is marked for fan-out of its
-- receipts to the sender's stream (another slot: see fan_out.lua and settle_fanout.lua).
-- KEYS[1] letter hash   KEYS[2] inbox zset   KEYS[3] due zset
-- KEYS[4] the recipient's sent hash: an id the recipient used for a letter of its own is taken
-- KEYS[5] the recipient's event stream      KEYS[6] the recipient's fan-out zset
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
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return {'conflict', ''}
end
redis.call('HSET', KEYS[1],
  'digest', ARGV[2], 'env', ARGV[3], 'seal', ARGV[4], 'ct', ARGV[5], 'sender', ARGV[6],
  'exp', ARGV[8], 'state', 'accepted', 'head', ARGV[10], 'seq', 1, 'r:0', ARGV[9])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[12], '*', 'e', ARGV[11])
redis.call('ZADD', KEYS[6], 1, ARGV[1])
return {'created', ARGV[9]}
