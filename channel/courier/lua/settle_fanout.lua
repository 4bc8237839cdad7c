-- Clear a letter's fan-out mark once its sender has its first `count` events, unless a later
-- transition marked it again meanwhile (then that transition's fan-out still has to run).
-- KEYS[1] the recipient's fan-out zset
-- ARGV[1] letter id   ARGV[2] count of events the sender now has
-- Returns 1 if cleared
local marked = redis.call('ZSCORE', KEYS[1], ARGV[1])
if marked and tonumber(marked) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
