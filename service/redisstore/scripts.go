package redisstore

import "github.com/redis/go-redis/v9"

// Every script touches only keys of one hash tag, so each runs unchanged on
// Redis Cluster. Times are milliseconds from the caller's clock, passed in
// ARGV: replicas of otpd agree on time through NTP, and tests can move the
// clock without waiting.

// windowLua is the sliding-window log every limit uses: a sorted set of
// events scored by time. Scripts that need it start with it.
const windowLua = `
-- When the window is full, returns the milliseconds until its oldest event
-- leaves it, else nil. Events older than the window are dropped only when
-- the log holds limit events or more, old ones included: below that the
-- window cannot be full, and the usual call saves a command. The log still
-- never holds more than limit events.
local function window_full(key, now, window, limit)
  if redis.call('ZCARD', key) < limit then return nil end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return tonumber(oldest[2]) + window - now
  end
  return nil
end
local function window_add(key, now, window, member)
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
end
`

// slotScript takes one event in a sliding-window log.
//
// KEYS[1] the window (sorted set, scored by time)
// ARGV now_ms, window_ms, limit, member
// Returns {1, 0} when taken, {0, retry_after_ms} when the window is full.
var slotScript = redis.NewScript(windowLua + `
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local retry = window_full(KEYS[1], now, window, limit)
if retry then return {0, retry} end
window_add(KEYS[1], now, window, ARGV[4])
return {1, 0}
`)

// sendScript checks the idempotency key, the shared slots, the cooldown
// and the per-recipient window, then, all checks passed, takes the
// cooldown, counts the send in every window and stores the code: nothing
// is written when a check refuses.
//
//   - KEYS[1] code: hash of h (code hash), id (verification id), exp
//     (expiry, ms), a (attempts used), m (max attempts)
//   - KEYS[2] cooldown: string "<until ms>:<verification id>"
//   - KEYS[3] per-recipient send window: sorted set
//   - KEYS[4] idempotency record: hash of fp (fingerprint), resp (answer)
//   - KEYS[5..] shared slot windows (per IP, per country): sorted sets.
//     Their hash tags differ from the recipient's, so there are none on
//     Redis Cluster, where the slots are taken by slotScript first.
//   - ARGV now_ms, ttl_ms, max_attempts, cooldown_ms, per_count,
//     per_window_ms, verification_id, code_hash, use_idempotency (0/1),
//     fingerprint, pending_ttl_ms, then window_ms and limit of each slot
//
// Returns {status, retry_after_ms[, answer or slot number]}; status as
// service.SendStatus.
var sendScript = redis.NewScript(windowLua + `
local now = tonumber(ARGV[1])
if ARGV[9] == '1' then
  local rec = redis.call('HMGET', KEYS[4], 'fp', 'resp')
  if rec[1] then
    if rec[1] ~= ARGV[10] then return {5, 0} end
    if rec[2] then return {3, 0, rec[2]} end
    return {4, 0}
  end
end
local slots = #KEYS - 4
for i = 1, slots do
  local retry = window_full(KEYS[4 + i], now, tonumber(ARGV[10 + 2 * i]), tonumber(ARGV[11 + 2 * i]))
  if retry then return {6, retry, i} end
end
local cooldown = tonumber(ARGV[4])
if cooldown > 0 then
  local cd = redis.call('GET', KEYS[2])
  if cd then
    local until_ms = tonumber(string.match(cd, '^(%d+)'))
    if until_ms > now then return {1, until_ms - now} end
  end
end
local limit, window = tonumber(ARGV[5]), tonumber(ARGV[6])
if limit > 0 then
  local retry = window_full(KEYS[3], now, window, limit)
  if retry then return {2, retry} end
  window_add(KEYS[3], now, window, ARGV[7])
end
for i = 1, slots do
  window_add(KEYS[4 + i], now, tonumber(ARGV[10 + 2 * i]), ARGV[7])
end
if cooldown > 0 then
  redis.call('SET', KEYS[2], (now + cooldown) .. ':' .. ARGV[7], 'PX', cooldown)
end
local ttl = tonumber(ARGV[2])
-- Every field is written: the old code, if any, is replaced whole.
redis.call('HSET', KEYS[1], 'h', ARGV[8], 'id', ARGV[7], 'exp', now + ttl, 'a', 0, 'm', tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ttl)
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[4], 'fp', ARGV[10])
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[11]))
end
return {0, 0}
`)

// completeScript stores the answer of an idempotent send.
//
// KEYS[1] idempotency record
// ARGV answer, ttl_ms
var completeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'resp', ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`)

// abortScript undoes a send whose delivery failed: the code and the
// cooldown only while they are still this send's, and a pending
// idempotency record.
//
// KEYS[1] code, KEYS[2] cooldown, KEYS[3] idempotency record
// ARGV verification_id, use_idempotency (0/1)
var abortScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
local cd = redis.call('GET', KEYS[2])
if cd and string.match(cd, ':(.*)$') == ARGV[1] then redis.call('DEL', KEYS[2]) end
if ARGV[2] == '1' and not redis.call('HGET', KEYS[3], 'resp') then redis.call('DEL', KEYS[3]) end
return 1
`)

// verifyScript checks a code.
//
// KEYS[1] code, KEYS[2] per-recipient verify window (sorted set)
// ARGV now_ms, code_hash, per_count, per_window_ms, attempt_id
// Returns {status, attempts_remaining, retry_after_ms}; status as
// service.VerifyStatus.
var verifyScript = redis.NewScript(windowLua + `
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
if limit > 0 then
  local retry = window_full(KEYS[2], now, window, limit)
  if retry then return {4, 0, retry} end
end
local c = redis.call('HMGET', KEYS[1], 'h', 'exp', 'a', 'm')
if not c[1] or tonumber(c[2]) <= now then return {2, 0, 0} end
local used, max = tonumber(c[3]), tonumber(c[4])
if used >= max then return {3, 0, 0} end
-- Constant time: Lua strings are interned, so == compares two pointers,
-- whatever the bytes. The only byte comparison is the interning's, against
-- strings of equal length and hash, and it runs on HMAC-SHA256 outputs
-- under the server secret (the caller's code was hashed by otpd): how many
-- leading bytes match tells the caller nothing it can steer, which is the
-- double-HMAC argument. Hashing both sides again (redis.sha1hex) would
-- only be more of the same and cost 1.7 µs of Redis CPU per call; a
-- byte-by-byte loop in Lua, 6 µs.
if c[1] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return {0, 0, 0}
end
used = redis.call('HINCRBY', KEYS[1], 'a', 1)
if limit > 0 then window_add(KEYS[2], now, window, ARGV[5]) end
return {1, max - used, 0}
`)
