-- Register a party's public keys. A name, once registered, is never given to other keys.
-- KEYS[1] party hash   KEYS[2] invitation key
-- ARGV[1] signing key  ARGV[2] encryption key  ARGV[3] registered at
-- ARGV[4] admission: "open" | "invite" | "pinned"   ARGV[5] sha256 of the invitation token (or "")
-- Returns "created" | "exists" (same keys) | "taken" (other keys) | "closed" (no valid invitation)
local signing = redis.call('HGET', KEYS[1], 'signing')
if signing then
  if signing == ARGV[1] and redis.call('HGET', KEYS[1], 'encryption') == ARGV[2] then
    return 'exists'
  end
  return 'taken'
end
if ARGV[4] == 'invite' then
  if ARGV[5] == '' or redis.call('GET', KEYS[2]) ~= ARGV[5] then
    return 'closed'
  end
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'signing', ARGV[1], 'encryption', ARGV[2], 'registered_at', ARGV[3])
return 'created'
