-- Extends the leader lease if the caller still holds it (coordinator/leader-lease.ts).
-- KEYS[1] the lease; ARGV[1] the holder string (`<token>:<coordinator id>:<nonce>`), ARGV[2] the
-- lease time in ms. Returns 1 if renewed, 0 if the lease is gone or someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
