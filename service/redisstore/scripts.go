package redisstore

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/otpd/otpd/service"
)

// Every script touches only keys of one hash tag, except a send's shared
// slots and a verification's per-IP window, which a store in split mode
// (Cluster, sharding proxies) takes with slotScript instead; so each runs
// unchanged on Redis Cluster. A subject's keys under every secret share its
// tag, so a script also moves what a rotated secret's keys hold
// (migrateLua).
//
// Three rules hold for every script:
//
//   - One clock: Redis's. A script reads TIME and moves it by the offset
//     the caller passes (its clock minus its local clock: about 0 in
//     production, so replicas whose machine clocks differ agree; tests that
//     move the service's clock move the scripts' too).
//   - Declared flags (the Redis 7 shebang): a script that may count a
//     guess or store a code is refused whole with OOM when Redis is over
//     maxmemory, rather than running until its first write is refused
//     (which would let a wrong guess go uncounted while a right one still
//     consumed the code). Only the clean-up scripts, which delete or
//     restore what a call left, declare allow-oom: refusing them would
//     strand users exactly when Redis is full.
//   - Idempotent per id: a script run again with the same verification or
//     attempt id, because its first answer was lost, answers what the first
//     run did and counts nothing twice; after an undo, a late copy changes
//     nothing (a tombstone per id).

// script is a Lua script, run by SHA and by body when the server does not
// have it cached (after a restart or a failover).
type script struct {
	src  string
	hash string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, hash: hex.EncodeToString(sum[:])}
}

// The shebangs. A script with flags may not use undeclared keys, which
// none does. Without allow-cross-slot-keys its keys must share a hash slot
// on Redis Cluster only: on a single node or behind Sentinel a send's
// script spans the recipient's bucket and its slots' windows.
const (
	guarded  = "#!lua\n"                 // refused whole under OOM
	cleanUp  = "#!lua flags=allow-oom\n" // runs under OOM: frees or restores state
	readOnly = "#!lua flags=no-writes\n" // writes nothing: runs under OOM
	clockLua = `
-- now is Redis's clock in milliseconds, moved by the caller's offset.
local function clock(offset)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(offset)
end
`
)

// windowLua is the sliding-window log every limit uses: a sorted set of
// events scored by time.
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

// conversionLua is the low-conversion rule (service.Slot.Conversion): a
// subject's unverified sends are a sorted set of verification ids scored
// by time, as a window's events; its verified sends a hash of counts per
// part of the window (field: the part's start in ms divided by the part's
// length, window/24), so that it stays a few fields however many codes
// are verified. A send's id leaves the set when it is verified (credited),
// released or out of the window: the rule itself caps the set at its
// threshold.
var conversionLua = `
-- The length of one part of a window, in ms.
local function conv_part(window)
  return math.max(1, math.floor(window / ` + conversionBuckets + `))
end
-- When the subject's unverified sends (key u) reach max(min, ratio ×
-- verified) (key v), returns the milliseconds until the oldest leaves the
-- window, else nil. Below min the usual call costs one ZCARD; the
-- verified count is read, and its parts that left the window dropped,
-- only above it.
local function conv_full(u, v, now, window, min, ratio)
  local n = redis.call('ZCARD', u)
  if n < min then return nil end
  n = n - redis.call('ZREMRANGEBYSCORE', u, '-inf', now - window)
  if n < min then return nil end
  local first, verified, old = math.floor((now - window) / conv_part(window)), 0, {}
  local f = redis.call('HGETALL', v)
  for i = 1, #f, 2 do
    if tonumber(f[i]) >= first then verified = verified + tonumber(f[i + 1]) else old[#old + 1] = f[i] end
  end
  if #old > 0 then redis.call('HDEL', v, unpack(old)) end
  if n < ratio * verified then return nil end
  local oldest = redis.call('ZRANGE', u, 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
-- Credits a verified send: its id leaves u and, only when it was there,
-- v's count of the current part grows. Returns 1 when credited.
local function conv_credit(u, v, now, window, member)
  if redis.call('ZREM', u, member) == 0 then return 0 end
  local part = conv_part(window)
  redis.call('HINCRBY', v, math.floor(now / part), 1)
  redis.call('PEXPIRE', v, window + part)
  return 1
end
`

// helpers are the functions the deciding scripts share.
var helpers = clockLua + windowLua + conversionLua + migrateLua

// conversionBuckets is service.ConversionBuckets for Lua.
var conversionBuckets = strconv.Itoa(service.ConversionBuckets)

// migrateLua moves state from a rotated secret's keys to the current
// secret's before a script decides anything, so that codes, cooldowns,
// windows and idempotency records carry over the rotation. The keys of one
// subject under every secret share its bucket, and so a hash slot: the
// move is atomic with the decision, on Redis Cluster too, whatever other
// replicas (with the old secret or the new) do at the same time.
const migrateLua = `
-- The last 2n KEYS are n (previous, current) pairs, and kinds has one
-- letter per pair. A previous key's state goes to the current key: by
-- RENAME (which keeps its expiry) when the current key holds nothing, else
-- merged by kind: h a code (the later expiry wins: a newer send replaces
-- an older code), c a cooldown (the later end wins), z a window (the
-- union of both, expiring with the later), n counts (a hash of numbers:
-- summed field by field, expiring with the later), k an idempotency
-- record (the current one wins). Without pairs it runs no command; with pairs and
-- nothing to move, one EXISTS. Returns the number of KEYS before the pairs.
local function later(kind, from, to)
  if kind == 'h' then
    return (tonumber(redis.call('HGET', from, 'exp')) or 0) > (tonumber(redis.call('HGET', to, 'exp')) or 0)
  elseif kind == 'c' then
    local a = tonumber(string.match(redis.call('GET', from) or '', '^(%d+)')) or 0
    local b = tonumber(string.match(redis.call('GET', to) or '', '^(%d+)')) or 0
    return a > b
  end
  return false
end
local function migrate(kinds)
  local n = #kinds
  local first = #KEYS - 2 * n
  if n == 0 then return first end
  local old = {}
  for i = 1, n do old[i] = KEYS[first + 2 * i - 1] end
  if redis.call('EXISTS', unpack(old)) == 0 then return first end
  for i = 1, n do
    local from, to, kind = old[i], KEYS[first + 2 * i], string.sub(kinds, i, i)
    if redis.call('EXISTS', from) == 1 then
      if redis.call('EXISTS', to) == 0 or later(kind, from, to) then
        redis.call('RENAME', from, to)
      elseif kind == 'z' then
        local ttl = math.max(redis.call('PTTL', from), redis.call('PTTL', to))
        redis.call('ZUNIONSTORE', to, 2, to, from, 'AGGREGATE', 'MAX')
        if ttl > 0 then redis.call('PEXPIRE', to, ttl) end
        redis.call('DEL', from)
      elseif kind == 'n' then
        local ttl = math.max(redis.call('PTTL', from), redis.call('PTTL', to))
        local f = redis.call('HGETALL', from)
        for j = 1, #f, 2 do redis.call('HINCRBY', to, f[j], f[j + 1]) end
        if ttl > 0 then redis.call('PEXPIRE', to, ttl) end
        redis.call('DEL', from)
      else
        redis.call('DEL', from)
      end
    end
  end
  return first
end
`

// keptLua reads and writes the earlier codes a record keeps valid beside
// its latest one (code.keep_previous): fields p1 (the newest) to pN, each
// the code's expiry in 13 decimal digits (ms) followed by its hash, and
// nothing else: the attempt counter (a, m), the consumed mark and the
// wrong attempts are the record's, shared by every code in it. One field
// per code, each under Redis's hash-max-listpack-value (64 bytes), keeps
// the record a compact listpack: one value holding several codes would
// turn it into a hash table, about twice the memory.
var keptLua = `
local kept_fields = {` + keptFields() + `}
-- The kept codes among values (an HMGET reply of kept_fields from index
-- first on) that expire after now, newest first: {exp, hash}.
local function kept_in(values, first, now)
  local out = {}
  for i = first, first + #kept_fields - 1 do
    local e = values[i]
    if e then
      local exp = tonumber(string.sub(e, 1, 13))
      if exp > now then out[#out + 1] = {exp, string.sub(e, 14)} end
    end
  end
  return out
end
-- The kept codes of the record at key that expire after now.
local function kept(key, now)
  return kept_in(redis.call('HMGET', key, unpack(kept_fields)), 1, now)
end
-- Writes the first limit codes of list as the record's kept codes.
local function keep(key, list, limit)
  redis.call('HDEL', key, unpack(kept_fields))
  local args = {}
  for i = 1, math.min(#list, limit, #kept_fields) do
    args[#args + 1] = kept_fields[i]
    args[#args + 1] = string.format('%013d', list[i][1]) .. list[i][2]
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
-- Whether the code record c (HMGET h, exp, a, m, ok) can verify now.
local function live(c, now)
  return c[1] and not c[5] and tonumber(c[2]) > now and tonumber(c[3]) < tonumber(c[4])
end
`

// keptFields lists the fields of kept codes for Lua: 'p1', ..., one per
// code service.MaxKeepPrevious allows.
func keptFields() string {
	f := make([]string, service.MaxKeepPrevious)
	for i := range f {
		f[i] = "'p" + strconv.Itoa(i+1) + "'"
	}
	return strings.Join(f, ", ")
}

// slotScript takes one event in a sliding-window log; a member already in
// the log counts as taken.
//
// KEYS[1] the window (sorted set, scored by time), then the moves of
// migrateLua
// ARGV offset_ms, window_ms, limit, member, kinds
// Returns {1, 0} when taken, {0, retry_after_ms} when the window is full.
var slotScript = newScript(guarded + helpers + `
migrate(ARGV[5])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return {1, 0} end
local now, window, limit = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local retry = window_full(KEYS[1], now, window, limit)
if retry then return {0, retry} end
window_add(KEYS[1], now, window, ARGV[4])
return {1, 0}
`)

// convSlotScript takes one send in a conversion slot (conversionLua); a
// member already there counts as taken.
//
// KEYS[1] the unverified sends (sorted set), KEYS[2] the verified counts
// (hash), then the moves of migrateLua
// ARGV offset_ms, window_ms, min_unverified, ratio, record (0/1), member,
// kinds
// Returns {1, 0, over (0/1)} when taken (over: above the threshold, taken
// for record), {0, retry_after_ms} when refused.
var convSlotScript = newScript(guarded + helpers + `
migrate(ARGV[7])
if redis.call('ZSCORE', KEYS[1], ARGV[6]) then return {1, 0, 0} end
local now, window = clock(ARGV[1]), tonumber(ARGV[2])
local over = 0
local retry = conv_full(KEYS[1], KEYS[2], now, window, tonumber(ARGV[3]), tonumber(ARGV[4]))
if retry then
  if ARGV[5] ~= '1' then return {0, retry} end
  over = 1
end
window_add(KEYS[1], now, window, ARGV[6])
return {1, 0, over}
`)

// creditScript credits a verified send to a conversion slot
// (conversionLua); run again, it counts nothing twice.
//
// KEYS[1] the unverified sends, KEYS[2] the verified counts, then the
// moves of migrateLua
// ARGV offset_ms, window_ms, member, kinds
// Returns 1 when credited, 0 when the member was not there.
var creditScript = newScript(guarded + helpers + `
migrate(ARGV[4])
return conv_credit(KEYS[1], KEYS[2], clock(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
`)

// sendScript checks the idempotency key, the shared slots, the cooldown
// and the per-recipient window, then, all checks passed, takes the
// cooldown, counts the send in every window and stores the code: nothing
// is written when a check refuses. An empty code_hash is a delivery of the
// caller's code (SendParams.NoCode): everything but the code is taken, and
// a live code stays as it is. Run again for a verification id whose code
// (for a delivery: whose cooldown, count or idempotency record) is
// stored, it answers accepted and changes nothing; for an id whose abort
// left a tombstone, it answers 7 (undone) and changes nothing.
//
//   - KEYS[1] code: hash of h (code hash), id (verification id), exp
//     (expiry, ms), a (attempts used), m (max attempts), c (the send's
//     client-IP conversion subject, service.SendParams.Credit, when it
//     has one) and once verified ok (the attempt that consumed it);
//     x:<attempt id> per wrong attempt;
//     p1..pN, the earlier codes kept valid (keptLua), with keep_previous only
//   - KEYS[2] cooldown: string "<until ms>:<verification id>"
//   - KEYS[3] per-recipient send window: sorted set
//   - KEYS[4] idempotency record: hash of fp (fingerprint), id (the
//     verification id of the send that holds it), resp (answer)
//   - KEYS[5] this verification id's tombstone
//   - KEYS[6..] two keys per shared slot (per IP, per country, conversion):
//     its window (sorted set) and its verified counts (hash; used by a
//     conversion slot only, conversionLua). Their hash tags differ from
//     the recipient's, so there are none on Redis Cluster, where the
//     slots are taken by slotScript and convSlotScript first.
//   - then the moves of migrateLua
//   - ARGV offset_ms, ttl_ms, max_attempts, cooldown_ms, per_count,
//     per_window_ms, verification_id, code_hash (empty: store no code),
//     use_idempotency (0/1),
//     fingerprint, pending_ttl_ms, kinds, keep_previous, credit, then
//     window_ms, limit (a conversion slot's min_unverified), ratio (empty
//     for a plain window) and record (0/1) of each slot
//
// With keep_previous N > 0 a new code keeps a live code (and the N - 1
// newest codes it kept that have not expired) valid beside it, each with
// its own expiry, and the record's attempt counter as it is: a resend
// gives nobody more guesses at codes already out. A code that cannot
// verify (expired, consumed, out of attempts) is never kept, and the new
// code then starts afresh, every attempt free, as with N = 0.
//
// Returns {status, retry_after_ms[, answer or slot number]}; status as
// service.SendStatus, or 7. Accepted, the slot number is the first
// conversion slot in record mode that was over its threshold, or 0.
var sendScript = newScript(guarded + helpers + keptLua + `
local slots = (migrate(ARGV[12]) - 5) / 2
if redis.call('EXISTS', KEYS[5]) == 1 then return {7, 0} end
if redis.call('HGET', KEYS[1], 'id') == ARGV[7] then return {0, 0} end
local deliver = ARGV[8] == ''
if deliver then
  local cd = redis.call('GET', KEYS[2])
  if cd and string.match(cd, ':(.*)$') == ARGV[7] then return {0, 0} end
  if redis.call('ZSCORE', KEYS[3], ARGV[7]) then return {0, 0} end
  if ARGV[9] == '1' and redis.call('HGET', KEYS[4], 'id') == ARGV[7] then return {0, 0} end
end
local now = clock(ARGV[1])
if ARGV[9] == '1' then
  local rec = redis.call('HMGET', KEYS[4], 'fp', 'resp')
  if rec[1] then
    if rec[1] ~= ARGV[10] then return {5, 0} end
    if rec[2] then return {3, 0, rec[2]} end
    return {4, 0}
  end
end
local over = 0
for i = 1, slots do
  local a = 11 + 4 * i
  local retry
  if ARGV[a + 2] == '' then
    retry = window_full(KEYS[4 + 2 * i], now, tonumber(ARGV[a]), tonumber(ARGV[a + 1]))
  else
    -- A re-run of the send answered above: the id is not in the slot.
    retry = conv_full(KEYS[4 + 2 * i], KEYS[5 + 2 * i], now, tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
    if retry and ARGV[a + 3] == '1' then
      retry = nil
      if over == 0 then over = i end
    end
  end
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
  window_add(KEYS[4 + 2 * i], now, tonumber(ARGV[11 + 4 * i]), ARGV[7])
end
if cooldown > 0 then
  redis.call('SET', KEYS[2], (now + cooldown) .. ':' .. ARGV[7], 'PX', cooldown)
end
if not deliver then
  local ttl, n = tonumber(ARGV[2]), tonumber(ARGV[13])
  local c = n > 0 and redis.call('HMGET', KEYS[1], 'h', 'exp', 'a', 'm', 'ok')
  if c and live(c, now) then
    -- The live code and the newest of those it kept stay, with the
    -- attempts used and the wrong attempts' marks.
    local list = {{tonumber(c[2]), c[1]}}
    for _, e in ipairs(kept(KEYS[1], now)) do list[#list + 1] = e end
    redis.call('HSET', KEYS[1], 'h', ARGV[8], 'id', ARGV[7], 'exp', now + ttl, 'm', tonumber(ARGV[3]))
    if ARGV[14] == '' then redis.call('HDEL', KEYS[1], 'c') else redis.call('HSET', KEYS[1], 'c', ARGV[14]) end
    keep(KEYS[1], list, n)
  else
    -- The old code, if any, goes whole: its consumed mark and wrong
    -- attempts with it.
    redis.call('DEL', KEYS[1])
    if ARGV[14] == '' then
      redis.call('HSET', KEYS[1], 'h', ARGV[8], 'id', ARGV[7], 'exp', now + ttl, 'a', 0, 'm', tonumber(ARGV[3]))
    else
      redis.call('HSET', KEYS[1], 'h', ARGV[8], 'id', ARGV[7], 'exp', now + ttl, 'a', 0, 'm', tonumber(ARGV[3]), 'c', ARGV[14])
    end
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[4], 'fp', ARGV[10], 'id', ARGV[7])
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[11]))
end
return {0, 0, over}
`)

// completeScript stores the answer of an idempotent send.
//
// KEYS[1] idempotency record, then the moves of migrateLua; ARGV answer,
// ttl_ms, kinds.
var completeScript = newScript(cleanUp + migrateLua + `
migrate(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'resp', ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`)

// abortScript undoes a send: the code, the cooldown and a pending
// idempotency record only while they are still this send's, optionally its
// count in the per-recipient window, and leaves a tombstone for its id.
// The codes kept beside the send's code (keep_previous) stay: the newest
// of them is the latest code again, with the attempts used so far. A code
// of the send that a newer send pushed among the kept ones goes, found by
// its hash.
//
// KEYS[1] code, KEYS[2] cooldown, KEYS[3] idempotency record, KEYS[4]
// per-recipient send window, KEYS[5] the id's tombstone, then the moves of
// migrateLua
// ARGV verification_id, use_idempotency (0/1), uncount (0/1),
// tombstone_ms, kinds, offset_ms, code_hash (empty for a delivery).
var abortScript = newScript(cleanUp + clockLua + migrateLua + keptLua + `
migrate(ARGV[5])
local c = redis.call('HMGET', KEYS[1], 'id', 'ok')
if c[1] == ARGV[1] then
  local now = clock(ARGV[6])
  local list = kept(KEYS[1], now)
  if c[2] or #list == 0 then
    redis.call('DEL', KEYS[1])
  else
    local top = table.remove(list, 1)
    redis.call('HSET', KEYS[1], 'h', top[2], 'exp', top[1], 'id', '')
    redis.call('HDEL', KEYS[1], 'c')
    keep(KEYS[1], list, #list)
    redis.call('PEXPIRE', KEYS[1], top[1] - now)
  end
elseif c[1] and ARGV[7] ~= '' then
  local list = kept(KEYS[1], clock(ARGV[6]))
  for i, e in ipairs(list) do
    if e[2] == ARGV[7] then
      table.remove(list, i)
      keep(KEYS[1], list, #list)
      break
    end
  end
end
local cd = redis.call('GET', KEYS[2])
if cd and string.match(cd, ':(.*)$') == ARGV[1] then redis.call('DEL', KEYS[2]) end
if ARGV[2] == '1' then
  local rec = redis.call('HMGET', KEYS[3], 'id', 'resp')
  if rec[1] == ARGV[1] and not rec[2] then redis.call('DEL', KEYS[3]) end
end
if ARGV[3] == '1' then redis.call('ZREM', KEYS[4], ARGV[1]) end
local tomb = tonumber(ARGV[4])
if tomb > 0 then redis.call('SET', KEYS[5], '1', 'PX', tomb) end
return 1
`)

// verifyScript checks a code.
//
// KEYS[1] code, KEYS[2] per-recipient verify window (sorted set), KEYS[3]
// the attempt's tombstone, KEYS[4] (optional) the client IP's verify
// window, on its own hash tag: present only when the store is not split;
// then the moves of migrateLua
// ARGV offset_ms, code_hash, per_count, per_window_ms, attempt_id,
// grace_ms, ip_count, ip_window_ms, kinds, then the code's hash under each
// previous secret
// Returns {status, attempts_remaining, retry_after_ms, limit}: status as
// service.VerifyStatus, or 5 (undone); limit 1 (per recipient) or 2 (per
// IP) for a rate limit. OK adds the record's id and c (its send's
// verification id and conversion subject, empty when none).
var verifyScript = newScript(guarded + helpers + keptLua + `
local ip = migrate(ARGV[9]) >= 4
if redis.call('EXISTS', KEYS[3]) == 1 then return {5, 0, 0, 0} end
local c = redis.call('HMGET', KEYS[1], 'h', 'exp', 'a', 'm', 'ok', 'x:' .. ARGV[5], unpack(kept_fields))
-- A re-run of this attempt answers what the first run decided.
local function ok()
  local r = redis.call('HMGET', KEYS[1], 'id', 'c')
  return {0, 0, 0, 0, r[1] or '', r[2] or ''}
end
if c[5] == ARGV[5] then return ok() end
if c[6] then return {1, tonumber(c[4]) - tonumber(c[3]), 0, 0} end
local now, limit, window = clock(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ip then
  local retry = window_full(KEYS[4], now, tonumber(ARGV[8]), tonumber(ARGV[7]))
  if retry then return {4, 0, retry, 2} end
end
if limit > 0 then
  local retry = window_full(KEYS[2], now, window, limit)
  if retry then return {4, 0, retry, 1} end
end
if not c[1] or c[5] or tonumber(c[2]) <= now then
  -- No live code: counted against the IP too, or probing who has a
  -- pending code would be free (a re-run adds the same member again).
  if ip then window_add(KEYS[4], now, tonumber(ARGV[8]), ARGV[5]) end
  return {2, 0, 0, 0}
end
local used, max = tonumber(c[3]), tonumber(c[4])
if used >= max then return {3, 0, 0, 0} end
-- Constant time: Lua strings are interned, so == compares two pointers,
-- whatever the bytes. The only byte comparison is the interning's, against
-- strings of equal length and hash, and it runs on HMAC-SHA256 outputs
-- under the server secret (the caller's code was hashed by otpd): how many
-- leading bytes match tells the caller nothing it can steer, which is the
-- double-HMAC argument. Hashing both sides again (redis.sha1hex) would
-- only be more of the same and cost 1.7 µs of Redis CPU per call; a
-- byte-by-byte loop in Lua, 6 µs. A code stored under a previous secret
-- matches its hash under that secret (ARGV[10..]), compared the same way,
-- and so does every earlier code kept valid beside the latest one (none
-- expires later than the latest, checked above). The first right code
-- consumes them all: they share the record.
local right = c[1] == ARGV[2]
for i = 10, #ARGV do right = right or c[1] == ARGV[i] end
for _, e in ipairs(kept_in(c, 7, now)) do
  right = right or e[2] == ARGV[2]
  for i = 10, #ARGV do right = right or e[2] == ARGV[i] end
end
if right then
  -- Consumed, not deleted: kept for the grace, marked with the attempt,
  -- so that a re-run of it answers OK again and an undo can restore it.
  -- Every other attempt finds no live code.
  redis.call('HSET', KEYS[1], 'ok', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[6]), tonumber(c[2]) - now))
  return ok()
end
used = redis.call('HINCRBY', KEYS[1], 'a', 1)
redis.call('HSET', KEYS[1], 'x:' .. ARGV[5], '1')
if limit > 0 then window_add(KEYS[2], now, window, ARGV[5]) end
if ip then window_add(KEYS[4], now, tonumber(ARGV[8]), ARGV[5]) end
return {1, max - used, 0, 0}
`)

// undoVerifyScript makes a code consumed by this attempt live again (until
// its own expiry) and leaves a tombstone for the attempt.
//
// KEYS[1] code, KEYS[2] the attempt's tombstone, then the moves of
// migrateLua; ARGV offset_ms, attempt_id, tombstone_ms, kinds.
var undoVerifyScript = newScript(cleanUp + clockLua + migrateLua + `
migrate(ARGV[4])
local c = redis.call('HMGET', KEYS[1], 'ok', 'exp')
if c[1] == ARGV[2] then
  local left = tonumber(c[2]) - clock(ARGV[1])
  if left > 0 then
    redis.call('HDEL', KEYS[1], 'ok')
    redis.call('PEXPIRE', KEYS[1], left)
  else
    redis.call('DEL', KEYS[1])
  end
end
local tomb = tonumber(ARGV[3])
if tomb > 0 then redis.call('SET', KEYS[2], '1', 'PX', tomb) end
return 1
`)

// cancelScript kills the codes of a recipient and usage type under every
// secret: the live one and those it keeps, or a consumed one, which no undo
// may bring back after a cancel. Cooldowns and windows stay. It only
// deletes, so it runs under OOM too.
//
// KEYS the code under the current secret, then under each previous one
// (one bucket, one hash slot); ARGV offset_ms.
// Returns 1 when a code that could verify was there, else 0.
var cancelScript = newScript(cleanUp + clockLua + keptLua + `
local now, was = clock(ARGV[1]), 0
for i = 1, #KEYS do
  if live(redis.call('HMGET', KEYS[i], 'h', 'exp', 'a', 'm', 'ok'), now) then was = 1 end
  redis.call('DEL', KEYS[i])
end
return was
`)

// statusScript reads a recipient's code and cooldown for a usage type,
// under every secret, without moving or counting anything: the code with
// the later expiry and the cooldown with the later end win, as migrateLua
// would decide. It writes nothing, so it runs under OOM too.
//
// KEYS (code, cooldown) under the current secret, then under each previous
// one; ARGV offset_ms.
// Returns {live (0/1), expires_ms, attempts_remaining, valid_codes,
// resend_after_ms}, times in the caller's clock, 0 for none.
var statusScript = newScript(readOnly + clockLua + keptLua + `
local now, best, at, cooldown = clock(ARGV[1]), nil, nil, 0
for i = 1, #KEYS, 2 do
  local c = redis.call('HMGET', KEYS[i], 'h', 'exp', 'a', 'm', 'ok')
  if c[1] and (not best or tonumber(c[2]) > tonumber(best[2])) then best, at = c, KEYS[i] end
  local until_ms = tonumber(string.match(redis.call('GET', KEYS[i + 1]) or '', '^(%d+)')) or 0
  if until_ms > now and until_ms > cooldown then cooldown = until_ms end
end
if best and live(best, now) then
  return {1, tonumber(best[2]), tonumber(best[4]) - tonumber(best[3]), 1 + #kept(at, now), cooldown}
end
return {0, 0, 0, 0, cooldown}
`)
