-- One page of a listing read newest first: up to ARGV[1] members after member ARGV[2].
-- KEYS[1] the listing (inbox or outbox zset)
-- Returns false when ARGV[2] is not in the listing. One script, so a letter filed between
-- finding the cursor's rank and reading the page cannot shift the page by one.
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[2])
if not rank then
  return false
end
return redis.call('ZREVRANGE', KEYS[1], rank + 1, rank + tonumber(ARGV[1]))
