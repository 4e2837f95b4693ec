package redisstore

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"

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
-- A whole number as a command's argument: Redis formats a Lua number
-- argument with %.17g, which costs a quarter of a microsecond for a time
-- in ms; a string formatted once with %d costs a fraction of that.
local function int(n)
  return string.format('%d', n)
end
`
)

// windowLua is the sliding-window log of the shared limits (per IP, per
// country): a sorted set of events scored by time. A recipient's own
// windows are events in its record (recordLua).
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
-- at and window are strings (int): the event's time and the window's
-- length, in ms.
local function window_add(key, at, window, member)
  redis.call('ZADD', key, at, member)
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
var helpers = clockLua + windowLua + conversionLua + recordLua + migrateLua

// conversionBuckets is service.ConversionBuckets for Lua.
var conversionBuckets = strconv.Itoa(service.ConversionBuckets)

// recordLua reads and writes a recipient's record: one hash per
// recipient (per secret) holding everything otpd keeps about it, so that
// a live code costs one key. Redis spends about 140 bytes on a key before
// its value (the key's name, its dictionary and expiry entries, the
// object), so the code, its cooldown and the recipient's windows share
// one; a small hash stays a compact listpack while every value is under
// hash-max-listpack-value (64 bytes) and it has fewer fields than
// hash-max-listpack-entries (128).
//
// A field's first byte says whose it is: a usage type's tag (a lower-case
// letter, or {name} for a usage otpd has no letter for; Store.usageTag),
// or S (the recipient's send window) or V (its verify window). A usage
// type's fields are its tag followed by:
//
//	h  the code's hash
//	i  the verification id of the send that stored it
//	e  its expiry (ms)
//	a  attempts left
//	c  the send's client-IP conversion subject (service.SendParams.Credit),
//	   when it has one
//	o  once verified, the attempt that consumed it; g until when (ms) the
//	   consumed code answers that attempt's re-run (the grace)
//	p1..pN  the earlier codes kept valid (keptLua), with keep_previous only
//	d  the resend cooldown: its end (ms), taken by the code's send; or
//	   "<end ms>:<verification id>" when another send took it (a
//	   delivery of the caller's code, which stores no code)
//
// A window's fields are S and V followed by the last 8 characters of
// a send's verification id or a wrong attempt's id (event), each valued
// with its time (ms). A V event is also what makes a wrong attempt
// idempotent: run again, it answers MISMATCH and counts nothing; with
// verify_per_recipient off, V events are kept markWindow (15 min) for
// that alone. T and the same 8 characters is a send's or an attempt's
// tombstone (bury), valued with its end: the call was undone after its
// answer was lost, and a late copy of it must change nothing. Tombstones
// move with the record on a rotation, harmlessly: only the replica that
// undid a call looks for them. Redis 7.0 has no expiry per field: the
// record expires with the longest-lived of its parts (extend), and a part
// that is over (a code past its expiry or its grace, an event out of its
// window) reads as absent and goes when a script next passes by.
var recordLua = `
-- (Comes after clockLua: extend and bury use int and clock's times.)
-- The record at key as a table, field -> value.
local function record(key)
  local r, f = {}, redis.call('HGETALL', key)
  for i = 1, #f, 2 do r[f[i]] = f[i + 1] end
  return r
end
-- The fields of usage U's code, its kept codes (keptLua) aside.
local function code_names(U)
  return {U .. 'h', U .. 'i', U .. 'e', U .. 'a', U .. 'c', U .. 'o', U .. 'g'}
end
-- Reads usage U's kept codes after the first into r, a table of the
-- record at key's fields. Kept codes (keep_previous) fill p1, p2... in
-- order: without p1, none, and the caller has read p1.
--
-- A send and a verification read the fields they need, of the code, its
-- cooldown and the call's own events, in one HMGET however many other
-- fields the record has, into locals and a table r built at once: a list
-- of the names and a loop over them cost Redis about 3 µs more per call.
local function more_kept(key, r, U)
  for i = 2, ` + keepMax + ` do r[U .. 'p' .. i] = redis.call('HGET', key, U .. 'p' .. i) or nil end
end
-- Keeps the record at key at least ms more; fresh: it had no fields
-- before this script, so no expiry to keep. GT sets a later expiry only;
-- it never sets one on a key without (never left so by a script, but
-- checked: such a record would never go).
local function extend(key, ms, fresh)
  if ms <= 0 then return end
  local arg = int(ms)
  if fresh then
    redis.call('PEXPIRE', key, arg)
  elseif redis.call('PEXPIRE', key, arg, 'GT') == 0 and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, arg)
  end
end
-- Deletes usage U's code (its cooldown d stays) from the record at key,
-- and from r, a table of some of its fields; but for the fields in the
-- set rewrite, which the caller writes next.
local function drop_code(key, r, U, rewrite)
  local del, fields = {}, code_names(U)
  if r[U .. 'p1'] then
    for i = 1, ` + keepMax + ` do fields[#fields + 1] = U .. 'p' .. i end
  end
  for _, f in ipairs(fields) do
    if not (rewrite and rewrite[f]) then del[#del + 1] = f end
    r[f] = nil
  end
  redis.call('HDEL', key, unpack(del))
end
-- Whether usage U's code in r is over for good: past its expiry, or
-- consumed and past its grace. Such a code reads as no code at all.
local function over(r, U, now)
  if not r[U .. 'h'] then return false end
  if tonumber(r[U .. 'e']) <= now then return true end
  return r[U .. 'o'] ~= nil and tonumber(r[U .. 'g']) <= now
end
-- The end (ms) of usage U's cooldown in r, 0 for none.
local function cooldown_end(r, U)
  return tonumber(string.match(r[U .. 'd'] or '', '^(%d+)')) or 0
end
-- The verification id of the send that took usage U's cooldown in r: the
-- one it names, or, when it names none, the code's.
local function cooldown_owner(r, U)
  local d = r[U .. 'd']
  if not d then return nil end
  return string.match(d, ':(.*)$') or r[U .. 'i']
end
-- A send's or an attempt's event in a window: W and the id's last 8
-- characters (48 random bits of otpd's ids: two ids of one recipient's
-- window never share them in practice, and a window holds a few).
local function event(W, id)
  return W .. string.sub(id, -8)
end
-- Whether a call's tombstone, its T event's value (its end, or false
-- when absent), is there at now: the call was undone after its answer was
-- lost.
local function undone(tomb, now)
  return (tonumber(tomb) or 0) > now
end
-- Leaves the id's tombstone in the record at key for ms.
local function bury(key, id, now, ms)
  if ms <= 0 then return end
  redis.call('HSET', key, event('T', id), now + ms)
  extend(key, ms)
end
-- When the window W (S or V) of the record at key holds limit events of
-- the last window ms, returns the ms until its oldest leaves it, else
-- nil. Events out of the window go (from r too, a table of some of the
-- record's fields). A record of fewer than limit fields (size, when the
-- caller has read it) cannot hold limit events: the usual call costs one
-- HLEN.
local function log_full(key, r, W, now, window, limit, size)
  if (size or redis.call('HLEN', key)) < limit then return nil end
  local n, oldest, old = 0, nil, {}
  for f, v in pairs(record(key)) do
    if string.sub(f, 1, 1) == W then
      local at = tonumber(v)
      if at > now - window then
        n = n + 1
        if not oldest or at < oldest then oldest = at end
      else
        old[#old + 1] = f
      end
    end
  end
  if #old > 0 then
    redis.call('HDEL', key, unpack(old))
    for _, f in ipairs(old) do r[f] = nil end
  end
  if n >= limit then return oldest + window - now end
  return nil
end
`

// keepMax is service.MaxKeepPrevious for Lua.
var keepMax = strconv.Itoa(service.MaxKeepPrevious)

// markWindow is how long, in ms, a wrong attempt's V event stays in a
// record whose verify window is off (verify_per_recipient count 0): long
// enough to answer a re-run of the attempt (a lost answer retried),
// service.LateCopyTTL. With the window on, its events serve.
var markWindow = strconv.FormatInt(service.LateCopyTTL.Milliseconds(), 10)

// migrateLua moves state from a rotated secret's keys to the current
// secret's before a script decides anything, so that codes, cooldowns,
// windows and idempotency records carry over the rotation. The keys of one
// subject under every secret share its bucket, and so a hash slot: the
// move is atomic with the decision, on Redis Cluster too, whatever other
// replicas (with the old secret or the new) do at the same time.
const migrateLua = `
-- The usage tag of a record's field, nil for a window's event.
local function tag_of(f)
  local b = string.sub(f, 1, 1)
  if b == 'S' or b == 'V' or b == 'T' then return nil end
  if b == '{' then return string.match(f, '^{[^}]*}') end
  return b
end
-- Merges the record at from into the one at to: per usage type, the code
-- with the later expiry (a newer send replaces an older code) and the
-- cooldown with the later end; the windows' events of both; expiring
-- with the later of the two.
local function merge_record(from, to)
  local a, b = record(from), record(to)
  local ttl = math.max(redis.call('PTTL', from), redis.call('PTTL', to))
  local set, seen = {}, {}
  for f, v in pairs(a) do
    local U = tag_of(f)
    if not U then
      if not b[f] or tonumber(v) > tonumber(b[f]) then set[#set + 1] = f; set[#set + 1] = v end
    elseif not seen[U] then
      seen[U] = true
      if a[U .. 'h'] and (tonumber(a[U .. 'e']) or 0) > (tonumber(b[U .. 'e']) or 0) then
        if b[U .. 'h'] then drop_code(to, b, U) end
        for g, w in pairs(a) do
          if g ~= U .. 'd' and tag_of(g) == U then set[#set + 1] = g; set[#set + 1] = w end
        end
      end
      -- The cooldown names its owner: the code beside it may now be
      -- another send's.
      local from = cooldown_end(a, U) > cooldown_end(b, U) and a or b
      local owner = cooldown_owner(from, U)
      if from[U .. 'd'] and owner then
        set[#set + 1] = U .. 'd'; set[#set + 1] = cooldown_end(from, U) .. ':' .. owner
      end
    end
  end
  if #set > 0 then redis.call('HSET', to, unpack(set)) end
  if ttl > 0 then redis.call('PEXPIRE', to, ttl) end
  redis.call('DEL', from)
end
-- The last 2n KEYS are n (previous, current) pairs, and kinds has one
-- letter per pair. A previous key's state goes to the current key: by
-- RENAME (which keeps its expiry) when the current key holds nothing, else
-- merged by kind: r a recipient's record (merge_record), z a window (the
-- union of both, expiring with the later), n counts (a hash of numbers:
-- summed field by field, expiring with the later), k an idempotency
-- record (the current one wins). Without pairs it runs no command; with
-- pairs and nothing to move, one EXISTS. Returns the number of KEYS
-- before the pairs.
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
      if redis.call('EXISTS', to) == 0 then
        redis.call('RENAME', from, to)
      elseif kind == 'r' then
        merge_record(from, to)
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

// keptLua reads and writes the earlier codes a usage type's code keeps
// valid beside its latest one (code.keep_previous): fields <tag>p1 (the
// newest) to <tag>pN, each the code's expiry in 13 decimal digits (ms)
// followed by its hash, and nothing else: the attempts left (a), the
// consumed mark and the wrong attempts are the code's, shared by every
// code kept with it. One field per code, each under
// hash-max-listpack-value, keeps the record a compact listpack.
var keptLua = `
-- The kept codes of usage U in r that expire after now, newest first:
-- {exp, hash}.
local function kept(r, U, now)
  local out = {}
  -- Kept codes fill p1, p2... in order (keep): without p1, none, and no
  -- field name to build.
  if not r[U .. 'p1'] then return out end
  for i = 1, ` + keepMax + ` do
    local e = r[U .. 'p' .. i]
    if e then
      local exp = tonumber(string.sub(e, 1, 13))
      if exp > now then out[#out + 1] = {exp, string.sub(e, 14)} end
    end
  end
  return out
end
-- Writes the first limit codes of list as usage U's kept codes.
local function keep(key, r, U, list, limit)
  local del = {}
  for i = 1, ` + keepMax + ` do del[i] = U .. 'p' .. i; r[del[i]] = nil end
  redis.call('HDEL', key, unpack(del))
  local args = {}
  for i = 1, math.min(#list, limit, ` + keepMax + `) do
    local v = string.format('%013d', list[i][1]) .. list[i][2]
    args[#args + 1] = U .. 'p' .. i
    args[#args + 1] = v
    r[U .. 'p' .. i] = v
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
-- Whether usage U's code in r can verify now.
local function live(r, U, now)
  return r[U .. 'h'] ~= nil and not r[U .. 'o'] and tonumber(r[U .. 'e']) > now and tonumber(r[U .. 'a']) > 0
end
`

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
window_add(KEYS[1], int(now), ARGV[2], ARGV[4])
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
window_add(KEYS[1], int(now), ARGV[2], ARGV[6])
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
//   - KEYS[1] the recipient's record (recordLua)
//   - KEYS[2] idempotency record: hash of fp (fingerprint), id (the
//     verification id of the send that holds it), resp (answer)
//   - KEYS[3..] two keys per shared slot (per IP, per country, conversion):
//     its window (sorted set) and its verified counts (hash; used by a
//     conversion slot only, conversionLua). Their hash tags differ from
//     the recipient's, so there are none on Redis Cluster, where the
//     slots are taken by slotScript and convSlotScript first.
//   - then the moves of migrateLua
//   - ARGV offset_ms, ttl_ms, max_attempts, cooldown_ms, per_count,
//     per_window_ms, verification_id, code_hash (empty: store no code),
//     use_idempotency (0/1), fingerprint, pending_ttl_ms, kinds,
//     keep_previous, credit, usage tag, then window_ms, limit (a
//     conversion slot's min_unverified), ratio (empty for a plain window)
//     and record (0/1) of each slot
//
// With keep_previous N > 0 a new code keeps a live code (and the N - 1
// newest codes it kept that have not expired) valid beside it, each with
// its own expiry, and the code's attempt counter as it is: a resend gives
// nobody more guesses at codes already out. A code that cannot verify
// (expired, consumed, out of attempts) is never kept, and the new code
// then starts afresh, every attempt free, as with N = 0.
//
// Returns {status, retry_after_ms[, answer or slot number]}; status as
// service.SendStatus, or 7. Accepted, the slot number is the first
// conversion slot in record mode that was over its threshold, or 0.
var sendScript = newScript(guarded + helpers + keptLua + `
local slots = (migrate(ARGV[12]) - 2) / 2
local R, U, id = KEYS[1], ARGV[15], ARGV[7]
-- The code's and the cooldown's fields, the send's event and its
-- tombstone, read in one HMGET into r (see more_kept) and v.
local Fh, Fi, Fe, Fa, Fc, Fo, Fg, Fd, Fp = U .. 'h', U .. 'i', U .. 'e', U .. 'a', U .. 'c', U .. 'o', U .. 'g', U .. 'd', U .. 'p1'
local Se = event('S', id)
local v = redis.call('HMGET', R, Fh, Fi, Fe, Fa, Fc, Fo, Fg, Fd, Fp, Se, event('T', id))
local r = {[Fh] = v[1] or nil, [Fi] = v[2] or nil, [Fe] = v[3] or nil, [Fa] = v[4] or nil, [Fc] = v[5] or nil,
  [Fo] = v[6] or nil, [Fg] = v[7] or nil, [Fd] = v[8] or nil, [Fp] = v[9] or nil, [Se] = v[10] or nil}
if v[9] then more_kept(R, r, U) end
local now = clock(ARGV[1])
if undone(v[11], now) then return {7, 0} end
if v[2] == id then return {0, 0} end
local deliver = ARGV[8] == ''
if deliver then
  if cooldown_owner(r, U) == id then return {0, 0} end
  if v[10] then return {0, 0} end
  if ARGV[9] == '1' and redis.call('HGET', KEYS[2], 'id') == id then return {0, 0} end
end
if ARGV[9] == '1' then
  local rec = redis.call('HMGET', KEYS[2], 'fp', 'resp')
  if rec[1] then
    if rec[1] ~= ARGV[10] then return {5, 0} end
    if rec[2] then return {3, 0, rec[2]} end
    return {4, 0}
  end
end
local over_slot = 0
for i = 1, slots do
  local a = 12 + 4 * i
  local retry
  if ARGV[a + 2] == '' then
    retry = window_full(KEYS[1 + 2 * i], now, tonumber(ARGV[a]), tonumber(ARGV[a + 1]))
  else
    -- A re-run of the send answered above: the id is not in the slot.
    retry = conv_full(KEYS[1 + 2 * i], KEYS[2 + 2 * i], now, tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
    if retry and ARGV[a + 3] == '1' then
      retry = nil
      if over_slot == 0 then over_slot = i end
    end
  end
  if retry then return {6, retry, i} end
end
local cooldown = tonumber(ARGV[4])
if cooldown > 0 and v[8] then
  local until_ms = cooldown_end(r, U)
  if until_ms > now then return {1, until_ms - now} end
end
-- Every check passed: what the send takes goes in one HSET (w) and one
-- expiry (need).
local size = redis.call('HLEN', R)
local nows = int(now)
local w, need = {}, 0
local limit, window = tonumber(ARGV[5]), tonumber(ARGV[6])
if limit > 0 then
  local retry = log_full(R, r, 'S', now, window, limit, size)
  if retry then return {2, retry} end
  w[1] = Se; w[2] = nows
  need = window
end
for i = 1, slots do
  window_add(KEYS[1 + 2 * i], nows, ARGV[12 + 4 * i], id)
end
if cooldown > 0 then
  -- A code's cooldown is owned by the code's send (its i) unless it
  -- says otherwise: a delivery's names its id.
  w[#w + 1] = Fd
  w[#w + 1] = deliver and int(now + cooldown) .. ':' .. id or int(now + cooldown)
  need = math.max(need, cooldown)
elseif not deliver and r[Fd] and not string.find(r[Fd], ':') and r[Fi] then
  -- The new code's id must not become the owner of an earlier send's
  -- cooldown.
  w[#w + 1] = Fd; w[#w + 1] = r[Fd] .. ':' .. r[Fi]
end
if not deliver then
  local ttl, n, credit = tonumber(ARGV[2]), tonumber(ARGV[13]), ARGV[14]
  local k = #w
  w[k + 1] = Fh; w[k + 2] = ARGV[8]; w[k + 3] = Fi; w[k + 4] = id; w[k + 5] = Fe; w[k + 6] = int(now + ttl)
  if n > 0 and live(r, U, now) then
    -- The live code and the newest of those it kept stay, with the
    -- attempts left.
    local list = {{tonumber(r[Fe]), r[Fh]}}
    for _, e in ipairs(kept(r, U, now)) do list[#list + 1] = e end
    if credit == '' and r[Fc] then redis.call('HDEL', R, Fc) end
    keep(R, r, U, list, n)
  else
    -- The old code, if any, goes whole: its consumed mark and attempt
    -- count with it.
    if r[Fh] then drop_code(R, r, U, {[Fh] = true, [Fi] = true, [Fe] = true, [Fa] = true, [Fc] = credit ~= ''}) end
    w[#w + 1] = Fa; w[#w + 1] = ARGV[3]
  end
  if credit ~= '' then w[#w + 1] = Fc; w[#w + 1] = credit end
  need = math.max(need, ttl)
end
if #w > 0 then redis.call('HSET', R, unpack(w)) end
extend(R, need, size == 0)
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[2], 'fp', ARGV[10], 'id', id)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[11]))
end
return {0, 0, over_slot}
`)

// completeScript stores the answer of an idempotent send.
//
// KEYS[1] idempotency record, then the moves of migrateLua; ARGV answer,
// ttl_ms, kinds.
var completeScript = newScript(cleanUp + clockLua + recordLua + migrateLua + `
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
// KEYS[1] the recipient's record, KEYS[2] idempotency record, then the
// moves of migrateLua
// ARGV verification_id, use_idempotency (0/1), uncount (0/1),
// tombstone_ms, kinds, offset_ms, code_hash (empty for a delivery), usage
// tag.
var abortScript = newScript(cleanUp + clockLua + recordLua + migrateLua + keptLua + `
migrate(ARGV[5])
local R, U, id = KEYS[1], ARGV[8], ARGV[1]
local r = record(R)
local now, mine = clock(ARGV[6]), cooldown_owner(r, U) == id
if r[U .. 'i'] == id then
  local list = kept(r, U, now)
  if r[U .. 'o'] or #list == 0 then
    drop_code(R, r, U)
  else
    local top = table.remove(list, 1)
    redis.call('HSET', R, U .. 'h', top[2], U .. 'e', top[1], U .. 'i', '')
    redis.call('HDEL', R, U .. 'c')
    keep(R, r, U, list, #list)
  end
elseif r[U .. 'h'] and ARGV[7] ~= '' then
  local list = kept(r, U, now)
  for i, e in ipairs(list) do
    if e[2] == ARGV[7] then
      table.remove(list, i)
      keep(R, r, U, list, #list)
      break
    end
  end
end
if mine then redis.call('HDEL', R, U .. 'd') end
if ARGV[2] == '1' then
  local rec = redis.call('HMGET', KEYS[2], 'id', 'resp')
  if rec[1] == id and not rec[2] then redis.call('DEL', KEYS[2]) end
end
if ARGV[3] == '1' then redis.call('HDEL', R, event('S', id)) end
bury(R, id, now, tonumber(ARGV[4]))
return 1
`)

// verifyScript checks a code.
//
// KEYS[1] the recipient's record, KEYS[2] (optional) the client IP's
// verify window, on its own hash tag: present
// only when the store is not split; then the moves of migrateLua
// ARGV offset_ms, code_hash, per_count, per_window_ms, attempt_id,
// grace_ms, ip_count, ip_window_ms, kinds, usage tag, then the code's hash
// under each previous secret
// Returns {status, attempts_remaining, retry_after_ms, limit}: status as
// service.VerifyStatus, or 5 (undone); limit 1 (per recipient) or 2 (per
// IP) for a rate limit. OK adds the code's id and c (its send's
// verification id and conversion subject, empty when none).
var verifyScript = newScript(guarded + helpers + keptLua + `
local ip = migrate(ARGV[9]) >= 2
local R, U, aid = KEYS[1], ARGV[10], ARGV[5]
-- The code's fields (not the cooldown, which a verification never
-- reads), the attempt's event and its tombstone, read in one HMGET into r
-- (see more_kept) and v.
local Fh, Fi, Fe, Fa, Fc, Fo, Fg, Fp = U .. 'h', U .. 'i', U .. 'e', U .. 'a', U .. 'c', U .. 'o', U .. 'g', U .. 'p1'
local Ve, Te = event('V', aid), event('T', aid)
local v = redis.call('HMGET', R, Fh, Fi, Fe, Fa, Fc, Fo, Fg, Fp, Ve, Te)
local r = {[Fh] = v[1] or nil, [Fi] = v[2] or nil, [Fe] = v[3] or nil, [Fa] = v[4] or nil, [Fc] = v[5] or nil,
  [Fo] = v[6] or nil, [Fg] = v[7] or nil, [Fp] = v[8] or nil}
if v[8] then more_kept(R, r, U) end
local now = clock(ARGV[1])
if undone(v[10], now) then return {5, 0, 0, 0} end
if over(r, U, now) then drop_code(R, r, U) end
-- A re-run of this attempt answers what the first run decided: OK with
-- the code's send (its verification id and conversion subject), as a
-- right code below, or MISMATCH.
if r[Fo] == aid then return {0, 0, 0, 0, r[Fi] or '', r[Fc] or ''} end
if v[9] then return {1, tonumber(r[Fa]) or 0, 0, 0} end
local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
if ip then
  local retry = window_full(KEYS[2], now, tonumber(ARGV[8]), tonumber(ARGV[7]))
  if retry then return {4, 0, retry, 2} end
end
if limit > 0 then
  local retry = log_full(R, r, 'V', now, window, limit)
  if retry then return {4, 0, retry, 1} end
end
local nows = int(now)
local h = r[Fh]
if not h or r[Fo] then
  -- No live code: counted against the IP too, or probing who has a
  -- pending code would be free (a re-run adds the same member again).
  if ip then window_add(KEYS[2], nows, ARGV[8], aid) end
  return {2, 0, 0, 0}
end
local a = tonumber(r[Fa])
if a <= 0 then return {3, 0, 0, 0} end
-- Constant time: Lua strings are interned, so == compares two pointers,
-- whatever the bytes. The only byte comparison is the interning's, against
-- strings of equal length and hash, and it runs on HMAC-SHA256 outputs
-- under the server secret (the caller's code was hashed by otpd): how many
-- leading bytes match tells the caller nothing it can steer, which is the
-- double-HMAC argument. Hashing both sides again (redis.sha1hex) would
-- only be more of the same and cost 1.7 µs of Redis CPU per call; a
-- byte-by-byte loop in Lua, 6 µs. A code stored under a previous secret
-- matches its hash under that secret (ARGV[11..]), compared the same way,
-- and so does every earlier code kept valid beside the latest one (none
-- expires later than the latest, checked above). The first right code
-- consumes them all: they share the record.
local right = h == ARGV[2]
for i = 11, #ARGV do right = right or h == ARGV[i] end
for _, e in ipairs(kept(r, U, now)) do
  right = right or e[2] == ARGV[2]
  for i = 11, #ARGV do right = right or e[2] == ARGV[i] end
end
if right then
  -- Consumed, not deleted: kept for the grace, marked with the attempt,
  -- so that a re-run of it answers OK again and an undo can restore it.
  -- Every other attempt finds no live code.
  redis.call('HSET', R, Fo, aid, Fg, now + math.min(tonumber(ARGV[6]), tonumber(r[Fe]) - now))
  return {0, 0, 0, 0, r[Fi] or '', r[Fc] or ''}
end
-- One attempt less, and the attempt's V event: in the window, and the
-- mark that answers its re-run.
local left = a - 1
redis.call('HSET', R, Fa, int(left), Ve, nows)
if limit > 0 then
  extend(R, window)
else
  extend(R, ` + markWindow + `)
  log_full(R, r, 'V', now, ` + markWindow + `, 64)
end
if ip then window_add(KEYS[2], nows, ARGV[8], aid) end
return {1, left, 0, 0}
`)

// undoVerifyScript makes a code consumed by this attempt live again (until
// its own expiry) and leaves a tombstone for the attempt.
//
// KEYS[1] the recipient's record, then the moves of migrateLua; ARGV
// offset_ms, attempt_id, tombstone_ms,
// kinds, usage tag.
var undoVerifyScript = newScript(cleanUp + clockLua + recordLua + migrateLua + `
migrate(ARGV[4])
local R, U = KEYS[1], ARGV[5]
local r = record(R)
local now = clock(ARGV[1])
if r[U .. 'o'] == ARGV[2] and tonumber(r[U .. 'g']) > now then
  if tonumber(r[U .. 'e']) > now then
    redis.call('HDEL', R, U .. 'o', U .. 'g')
  else
    drop_code(R, r, U)
  end
end
bury(R, ARGV[2], now, tonumber(ARGV[3]))
return 1
`)

// cancelScript kills the code of a recipient and usage type under every
// secret: the live one and those it keeps, or a consumed one, which no undo
// may bring back after a cancel. Cooldowns and windows stay. It only
// deletes, so it runs under OOM too.
//
// KEYS the recipient's record under the current secret, then under each
// previous one (one bucket, one hash slot); ARGV offset_ms, usage tag.
// Returns 1 when a code that could verify was there, else 0.
var cancelScript = newScript(cleanUp + clockLua + recordLua + keptLua + `
local now, U, was = clock(ARGV[1]), ARGV[2], 0
for i = 1, #KEYS do
  local r = record(KEYS[i])
  if live(r, U, now) then was = 1 end
  if r[U .. 'h'] then drop_code(KEYS[i], r, U) end
end
return was
`)

// statusScript reads a recipient's code and cooldown for a usage type,
// under every secret, without moving or counting anything: the code with
// the later expiry and the cooldown with the later end win, as migrateLua
// would decide. It writes nothing, so it runs under OOM too.
//
// KEYS the recipient's record under the current secret, then under each
// previous one; ARGV offset_ms, usage tag.
// Returns {live (0/1), expires_ms, attempts_remaining, valid_codes,
// resend_after_ms}, times in the caller's clock, 0 for none.
var statusScript = newScript(readOnly + clockLua + recordLua + keptLua + `
local now, U, best, cooldown = clock(ARGV[1]), ARGV[2], nil, 0
for i = 1, #KEYS do
  local r = record(KEYS[i])
  if r[U .. 'h'] and (not best or tonumber(r[U .. 'e']) > tonumber(best[U .. 'e'])) then best = r end
  local until_ms = cooldown_end(r, U)
  if until_ms > now and until_ms > cooldown then cooldown = until_ms end
end
if best and live(best, U, now) then
  return {1, tonumber(best[U .. 'e']), tonumber(best[U .. 'a']), 1 + #kept(best, U, now), cooldown}
end
return {0, 0, 0, 0, cooldown}
`)
