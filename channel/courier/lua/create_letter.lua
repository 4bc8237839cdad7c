-- On Redis Cluster, the recipient's half of a send (the recipient's slot), idempotent on the
-- letter id: store the letter (its ciphertext in a key of its own), file the inbox entry, index
-- the deadline, append the recipient's live event and mark the letter for fan-out of its events
-- to the sender's stream (another slot: fan_out.lua, run by the sweeper for a send).
-- KEYS[1] letter hash   KEYS[2] ciphertext key   KEYS[3] inbox zset   KEYS[4] due zset
-- KEYS[5] the recipient's sent hash: an id the recipient used for a letter of its own is taken
-- KEYS[6] the recipient's event stream      KEYS[7] the recipient's fan-out zset
-- ARGV[1] letter id    ARGV[2] packed envelope (channel/compact.py)   ARGV[3] seal
-- ARGV[4] ciphertext   ARGV[5] sent (ms)   ARGV[6] expires (ms)   ARGV[7] accepted receipt (packed)
-- ARGV[8] its chain hash   ARGV[9] the recipient's event (JSON)   ARGV[10] stream length cap
-- Returns {"created", receipt} | {"exists", first receipt} | {"conflict", ""}
local envelope = redis.call('HGET', KEYS[1], 'e')
if envelope then
  if envelope == ARGV[2] then
    return {'exists', redis.call('HGET', KEYS[1], 'r0')}
  end
  return {'conflict', ''}
end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then
  return {'conflict', ''}
end
-- The same short fields as send.lua.
redis.call('HSET', KEYS[1], 'e', ARGV[2], 's', ARGV[3], 'state', 'accepted', 'h', ARGV[8],
  'n', 1, 'r0', ARGV[7])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*', 'e', ARGV[9])
redis.call('ZADD', KEYS[7], 1, ARGV[1])
return {'created', ARGV[7]}
