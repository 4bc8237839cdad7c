-- File a letter in its sender's outbox (the sender's slot); idempotent.
-- KEYS[1] sent hash (letter id -> recipient)   KEYS[2] outbox zset
-- ARGV[1] letter id   ARGV[2] recipient   ARGV[3] sent (ms)
-- Returns 1
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1])
return 1
