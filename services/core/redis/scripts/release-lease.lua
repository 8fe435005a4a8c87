-- Gives the leader lease back if the caller holds it (coordinator/leader-lease.ts).
-- KEYS[1] the lease; ARGV[1] the holder string. Returns 1 if released, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
