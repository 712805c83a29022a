-- hit.lua, schema v1: one rating against every rate-limit rule that applies to it.
-- Checks every rule, then records the member in every key, or in none.
--
-- KEYS[i]   one sorted set per check: member = rating fingerprint, score = hit time (epoch ms)
-- ARGV[1]   member
-- ARGV[2]   the hit time in epoch ms, or '' for the server clock (TIME)
-- ARGV[3]   per check, space-separated: window_ms limit ttl_ms (one string: fewer arguments
--           to encode). window_ms > 0: sliding log over (now - window_ms, now]; 0: fixed
--           bucket. limit >= 1. ttl_ms: the key outlives its last hit by at least this long.
--
-- Returns {now_ms, i1, retry_after_ms1, i2, retry_after_ms2, ...}: the time used, then
-- each failing check (1-based index) with the ms until a retry could pass it (0 for a
-- fixed bucket: the caller knows when the bucket ends). Allowed and recorded:
-- {now_ms, 0, a1, a2, ...}: a 0, then the (1-based) checks whose key newly got the
-- member (a refund gives back exactly those). A member already in a key passes that
-- check and is not counted twice.

local member = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2])
end

local spec = {}
for v in string.gmatch(ARGV[3], '%d+') do
  spec[#spec + 1] = tonumber(v)
end

local function num(x)
  return string.format('%d', x)
end

-- A key that does not exist holds nothing: it passes its check with no call beyond
-- EXISTS, and once the member is recorded in it, it has no ttl yet. Most keys of a
-- rating are new (a device's, an address's, a device's at a window): three calls each
-- instead of five or six, for one more on a key that exists.
local out = {now}
local new = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local window = spec[3 * i - 2]
  local limit = spec[3 * i - 1]
  if redis.call('EXISTS', key) == 0 then
    new[i] = true
  elseif window > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - window))
  end
  if not new[i] and not redis.call('ZSCORE', key, member) then
    local count
    if window > 0 then
      count = redis.call('ZCOUNT', key, '(' .. num(now - window), num(now))
    else
      count = redis.call('ZCARD', key)
    end
    if count >= limit then
      local retry = 0
      if window > 0 then
        -- the entry that must leave the window for the count to drop below the limit
        local e = redis.call('ZRANGEBYSCORE', key, '(' .. num(now - window), num(now),
          'WITHSCORES', 'LIMIT', count - limit, 1)
        retry = tonumber(e[2]) + window - now
      end
      out[#out + 1] = i
      out[#out + 1] = retry
    end
  end
end

if #out == 1 then
  out[2] = 0
  local seen = {}  -- a key named twice: only its first recording finds it without a ttl
  for i = 1, #KEYS do
    local key = KEYS[i]
    local ttl = spec[3 * i]
    if redis.call('ZADD', key, 'NX', num(now), member) == 1 then
      out[#out + 1] = i
    end
    if (new[i] and not seen[key]) or redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
    seen[key] = true
  end
end
return out
