-- Read a letter and its receipt chain in one step.
-- KEYS[1] letter hash   KEYS[2] receipts list
-- ARGV[1] "1" to include the ciphertext
-- Returns {} if absent, else {state, head, sender, exp, env, seal, digest, ciphertext or "", receipts...}
local f = redis.call('HMGET', KEYS[1], 'state', 'head', 'sender', 'exp', 'env', 'seal', 'digest', 'ct')
if not f[1] then
  return {}
end
local out = {f[1], f[2], f[3], f[4], f[5], f[6], f[7], ''}
if ARGV[1] == '1' and f[8] then
  out[8] = f[8]
end
for _, receipt in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  out[#out + 1] = receipt
end
return out
