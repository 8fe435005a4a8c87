-- Moves a restored queue's confirmed count forward only (core/restore-state.ts): a stale
-- writer's smaller count is ignored.
-- KEYS[1] the restore's queue hash; ARGV[1] the field (`c:<queue key>`), ARGV[2] the confirmed
-- count, ARGV[3] the source offset. Returns 1 if written, 0 if the stored count is not smaller.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local count = tonumber(string.match(current, '^(%d+):'))
  if count and count >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return 1
