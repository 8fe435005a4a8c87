-- Takes the next epoch, fenced by the leader lease (core/decision-log.ts).
-- KEYS[1] the lease, KEYS[2] the epoch counter.
-- ARGV[1] the holder string, ARGV[2] the floor (the newest epoch the store shows), ARGV[3] '1' to
-- be told when the counter is missing.
-- Returns -1 if the caller does not hold the lease; -2 if ARGV[3] is '1' and the counter is
-- missing (first round, or Redis lost it; nothing changed, so the caller can raise the floor above
-- what the store shows was already used); otherwise the counter, raised to at least the floor,
-- plus one.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local newest = tonumber(ARGV[2])
if current < newest then redis.call('SET', KEYS[2], newest) end
return redis.call('INCR', KEYS[2])
