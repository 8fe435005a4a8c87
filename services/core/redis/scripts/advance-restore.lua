-- Moves a restored queue's confirmed count forward only (core/restore-state.ts): a stale
-- writer's smaller count is ignored.
-- KEYS[1] the restore's queue hash; ARGV[1] the field (`c:<queue key>`), ARGV[2] the confirmed
-- count, ARGV[3] the source offset; optionally ARGV[4] the queue's assignment field
-- (`a:<queue key>`) and ARGV[5] the assignment the writer holds. Returns 1 if written, 0 if the
-- stored count is not smaller, -1 if the assignment given is not the queue's current one (the
-- writer was not asked to restore this queue of this restore, or no longer is).
if ARGV[4] and redis.call('HGET', KEYS[1], ARGV[4]) ~= ARGV[5] then return -1 end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local count = tonumber(string.match(current, '^(%d+):'))
  if count and count >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return 1
