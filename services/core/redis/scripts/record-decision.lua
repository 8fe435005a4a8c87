-- Records a round's state in the decision log, fenced by the leader lease (core/decision-log.ts).
-- KEYS[1] the lease, KEYS[2] the decision log (a hash by epoch).
-- ARGV[1] the holder string, ARGV[2] the epoch, ARGV[3] the record (JSON), ARGV[4] its state.
-- Returns -1 if the caller does not hold the lease; 0 for a `started` over an existing entry
-- (kept); 1 written, or already so; -2 the epoch was decided otherwise: a decided epoch keeps its
-- decision (I4).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local existing = redis.call('HGET', KEYS[2], ARGV[2])
if existing and ARGV[4] == 'started' then return 0 end
if existing and string.find(existing, '"state":"started"', 1, true) == nil then
  if string.find(existing, '"state":"' .. ARGV[4] .. '"', 1, true) then return 1 end
  return -2
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
