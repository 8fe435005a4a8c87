-- Takes the leader lease if nobody holds it (coordinator/leader-lease.ts).
-- KEYS[1] the lease, KEYS[2] the token counter.
-- ARGV[1] the claim (`<coordinator id>:<nonce>`), ARGV[2] the lease time in ms, ARGV[3] the floor:
-- the newest token the store has seen. The token never falls to or below it, so a leader elected
-- after Redis lost its counter still outranks every leader before it.
-- Returns the new token, or 0 if the lease is held.
if redis.call('EXISTS', KEYS[1]) == 0 then
  local token = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3])
  if token <= floor then
    token = floor + 1
    redis.call('SET', KEYS[2], token)
  end
  redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
  return token
end
return 0
