-- Copy a letter's receipt events into its sender's stream (the sender's slot), exactly once and
-- in order: events already copied are skipped, so callers may repeat it and race each other.
-- The count is kept with the envelope digest, so a later letter under a reused id (after the
-- first one's retention ran out) starts from zero.
-- KEYS[1] the sender's fanned hash (letter id -> "digest count")   KEYS[2] the sender's stream
-- ARGV[1] letter id   ARGV[2] event stream length cap   ARGV[3] envelope digest
-- ARGV[4..] the letter's events from its first receipt on, in order (JSON)
-- Returns the number of events copied now
local done = 0
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry then
  local digest, count = string.match(entry, '^(%S+) (%d+)$')
  if digest == ARGV[3] then
    done = tonumber(count)
  end
end
local total = #ARGV - 3
for i = done + 1, total do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[3 + i])
end
if total > done then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ' ' .. total)
  return total - done
end
return 0
