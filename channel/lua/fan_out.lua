-- Copy a letter's receipt events into its sender's stream (the sender's slot), exactly once and
-- in order: events already copied are skipped, so callers may repeat it and race each other.
-- KEYS[1] the sender's fanned hash (letter id -> events copied)   KEYS[2] the sender's event stream
-- ARGV[1] letter id   ARGV[2] event stream length cap
-- ARGV[3..] the letter's events from its first receipt on, in order (JSON)
-- Returns the number of events copied now
local done = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local total = #ARGV - 2
for i = done + 1, total do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[2 + i])
end
if total > done then
  redis.call('HSET', KEYS[1], ARGV[1], total)
  return total - done
end
return 0
