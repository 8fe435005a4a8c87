-- Marks a restored queue as started (core/restore-state.ts), only for the writer the leader
-- assigned it to.
-- KEYS[1] the restore's queue hash; ARGV[1] the field (`s:<queue key>`), ARGV[2] the queue's
-- assignment field (`a:<queue key>`), ARGV[3] the assignment the writer holds. Returns 1 if
-- written, -1 if the assignment is not the queue's current one.
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], '1')
return 1
