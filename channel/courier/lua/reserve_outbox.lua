-- File a letter in its sender's outbox (the sender's slot) before it is created in the
-- recipient's slot, refusing a letter id the sender already used for another recipient.
-- A party's letter ids are unique across its inbox and outbox, so an id names one letter for it.
-- KEYS[1] sent hash (letter id -> recipient)   KEYS[2] outbox zset
-- The send request's nonce is claimed here too, so a replayed send changes nothing.
-- KEYS[3] the letter hash this id would name in the sender's own inbox   KEYS[4] the nonce key
-- ARGV[1] letter id   ARGV[2] recipient   ARGV[3] sent (ms)   ARGV[4] nonce lifetime (ms)
-- Returns "new" (filed now) | "same" (already filed for this recipient) | "other" (refused)
--       | "replayed" (the nonce was used before; nothing done)
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[4]) then
  return 'replayed'
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 'other'
end
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  if existing == ARGV[2] then
    return 'same'
  end
  return 'other'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 'new'
