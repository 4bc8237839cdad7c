-- On Redis Cluster, copy a letter's events into its sender's stream (the sender's slot), exactly
-- once and in order: events already copied are skipped, so callers may repeat it and race each
-- other. The count is kept with the envelope digest, so a later letter under a reused id (after
-- the first one's retention ran out) starts from zero. Once the letter's last event is copied,
-- the count expires with the letter (its retention), so settled letters leave nothing behind.
-- KEYS[1] the letter's fanned key ("digest count")   KEYS[2] the sender's stream
-- ARGV[1] event stream length cap   ARGV[2] envelope digest
-- ARGV[3] retention (ms) once the letter is terminal, "" while it is not (0 = keep)
-- ARGV[4..] the letter's events from its first receipt on, in order (JSON)
-- Returns the number of events copied now
local done = 0
local entry = redis.call('GET', KEYS[1])
if entry then
  local digest, count = string.match(entry, '^(%S+) (%d+)$')
  if digest == ARGV[2] then
    done = tonumber(count)
  end
end
local total = #ARGV - 3
for i = done + 1, total do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3 + i])
end
if total > done then
  redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. total)
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if total > done then
  return total - done
end
return 0
