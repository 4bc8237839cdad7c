-- Read a letter and its receipt chain in one step.
-- KEYS[1] letter hash   KEYS[2] ciphertext key
-- ARGV[1] "1" to include the ciphertext
-- Returns {} if absent, else {state, head, packed envelope, seal, ciphertext or "",
-- packed receipts...}
local f = redis.call('HMGET', KEYS[1], 'state', 'h', 'e', 's', 'n')
if not f[1] then
  return {}
end
local out = {f[1], f[2], f[3], f[4], ''}
if ARGV[1] == '1' then
  out[5] = redis.call('GET', KEYS[2]) or ''
end
local fields = {}
for i = 0, (tonumber(f[5]) or 0) - 1 do
  fields[#fields + 1] = 'r' .. i
end
if #fields > 0 then
  for _, receipt in ipairs(redis.call('HMGET', KEYS[1], unpack(fields))) do
    out[#out + 1] = receipt
  end
end
return out
