-- Undo reserve_outbox when the letter could not be created (its id was taken in the recipient's
-- slot by a different letter), so a refused send leaves nothing behind.
-- KEYS[1] sent hash   KEYS[2] outbox zset
-- ARGV[1] letter id
-- Returns 1
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
