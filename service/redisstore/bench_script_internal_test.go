package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/service"
)

// BenchmarkScriptRedisCPU is redis-server's CPU time per call (INFO cpu,
// redis-us/op) of the verification and send scripts on the load test's
// path, next to a script that runs the very same Redis commands with as
// little Lua as it can (same-commands): the difference is what otpd's Lua
// costs beyond its commands, the part a leaner script could still save.
//
//   - verify: a wrong code for a live code, the verify window per recipient
//     on, a new client IP's window (8 commands: HMGET, TIME, ZCARD, HLEN,
//     HSET, PEXPIRE, ZADD, PEXPIRE);
//   - send: a new recipient with the four shared slots of a send with a
//     client IP (per IP, per country, and the conversion rule's per country
//     and per IP), the country's windows holding 100,000 events each (17
//     commands).
//
// floor is the floor's script (../shared/bench/floor: INCR and PEXPIRE on
// a new key), in the same harness.
//
// Each sub-benchmark starts from an empty redis-server and runs its calls
// in pipelines of 50, as the batcher sends them under load. The machine
// drifts: run the benchmark several times (-count repeats each
// sub-benchmark back to back; a loop interleaves them) and take medians:
//
//	for i in 1 2 3 4 5; do go test ./service/redisstore -run '^$' -bench ScriptRedisCPU -benchtime 20000x; done
func BenchmarkScriptRedisCPU(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	s := New(rdb, "")
	for _, bc := range []struct {
		name  string
		setup func(b *testing.B) func(i int) (*script, []string, []any)
	}{
		{"verify", func(b *testing.B) func(int) (*script, []string, []any) { return benchVerify(b, s, verifyScript) }},
		{"verify/same-commands", func(b *testing.B) func(int) (*script, []string, []any) {
			return benchVerify(b, s, sameCommandsVerify)
		}},
		{"send", func(b *testing.B) func(int) (*script, []string, []any) { return benchSend(b, s, sendScript) }},
		{"send/same-commands", func(b *testing.B) func(int) (*script, []string, []any) {
			return benchSend(b, s, sameCommandsSend)
		}},
		{"floor", func(b *testing.B) func(int) (*script, []string, []any) {
			loadScript(b, s, floorScript)
			return func(i int) (*script, []string, []any) {
				return floorScript, []string{"floor:{r" + strconv.Itoa(i) + "}"}, []any{600000}
			}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			call := bc.setup(b)
			start := redisCPU(b, rdb)
			b.ResetTimer()
			for i := 0; i < b.N; i += 50 {
				pipe := rdb.Pipeline()
				cmds := make([]*redis.Cmd, 0, 50)
				for j := i; j < min(i+50, b.N); j++ {
					sc, keys, args := call(j)
					cmds = append(cmds, pipe.EvalSha(ctx, sc.hash, keys, args...))
				}
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				for _, c := range cmds {
					v, _ := c.Result()
					if a, _ := v.([]any); len(a) < 1 || a[0] != int64(wantStatus(bc.name)) {
						b.Fatalf("%s answered %v", bc.name, v)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(redisCPU(b, rdb)-start)/float64(time.Microsecond)/float64(b.N), "redis-us/op")
		})
	}
}

// wantStatus is what each call of the benchmark must answer first:
// MISMATCH for a verification, accepted for a send, 1 for the floor's
// first INCR.
func wantStatus(name string) int {
	switch {
	case strings.HasPrefix(name, "verify"):
		return int(service.VerifyMismatch)
	case name == "floor":
		return 1
	}
	return int(service.SendAccepted)
}

// benchVerify stores a live code for each of 2000 recipients and returns
// the i-th call: a wrong code for one of them, from a client IP of its
// own.
func benchVerify(b *testing.B, s *Store, sc *script) func(int) (*script, []string, []any) {
	b.Helper()
	ctx := context.Background()
	const pool = 2000
	recs := make([]string, pool)
	for i := range recs {
		r := service.Recipient{Bucket: strconv.Itoa(i % 4096), ID: fmt.Sprintf("r%021d", i)}
		p := service.SendParams{Recipient: r, Usage: "sign_in", CodeHash: []byte("0123456789abcdef"), VerificationID: fmt.Sprintf("v%021d", i),
			Now: time.Now(), TTL: 10 * time.Minute, MaxAttempts: 100, Cooldown: time.Minute,
			PerRecipient: service.Window{Count: 5, Window: 10 * time.Minute}, Credit: "0123456789abcdef012345678"}
		if _, err := s.beginSend(ctx, p, nil); err != nil {
			b.Fatal(err)
		}
		recs[i] = s.keysOf(r, service.IdempotencyKey{}).rec
	}
	loadScript(b, s, sc)
	return func(i int) (*script, []string, []any) {
		ip := s.windowKey(strconv.Itoa(i%4096), "vip:"+strconv.Itoa(i))
		return sc, []string{recs[i%pool], ip}, []any{0, "wrong-code-hash!", 1000000000, 3600000, fmt.Sprintf("a%021d", i), 60000, 100, 3600000, "", "s"}
	}
}

// benchSend fills the country's two windows with 100,000 events each, as
// the load test leaves them, and returns the i-th call: a send to a new
// recipient from a new client IP.
func benchSend(b *testing.B, s *Store, sc *script) func(int) (*script, []string, []any) {
	b.Helper()
	ctx := context.Background()
	for k := range 100 {
		pipe := s.rdb.Pipeline()
		for j := range 1000 {
			m := redis.Z{Score: float64(time.Now().UnixMilli()), Member: fmt.Sprintf("x%021d", k*1000+j)}
			pipe.ZAdd(ctx, s.windowKey("", "cc:1"), m)
			pipe.ZAdd(ctx, s.windowKey("", "cv:cc:1"), m)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	loadScript(b, s, sc)
	rule := &service.ConversionRule{MinUnverified: 1000000000, Ratio: 0.2}
	return func(i int) (*script, []string, []any) {
		bucket, ip := strconv.Itoa(i%4096), "ip:"+strconv.Itoa(i)
		slots := []service.Slot{
			{Key: ip, Bucket: bucket, Window: service.Window{Count: 20, Window: time.Hour}},
			{Key: "cc:1", Window: service.Window{Count: 1000000000, Window: time.Hour}},
			{Key: "cv:cc:1", Window: service.Window{Window: 24 * time.Hour}, Conversion: rule},
			{Key: "cv" + ip, Bucket: bucket, Window: service.Window{Window: 24 * time.Hour}, Conversion: rule},
		}
		id := fmt.Sprintf("v%021d", i)
		k := s.keysOf(service.Recipient{Bucket: bucket, ID: "r" + id}, service.IdempotencyKey{})
		keys := []string{k.rec, k.idem}
		args := []any{0, 600000, 100, 60000, 5, 600000, id, "0123456789abcdef", "0", "", 20000, "", 0, bucket + "0123456789abcdef0123", "s"}
		for _, sl := range slots {
			keys = append(keys, s.slotKey(sl), s.verifiedKey(sl.Bucket, sl.Key))
			args = append(args, ms(sl.Window.Window), slotLimit(sl), ratio(sl), record(sl))
		}
		return sc, keys, args
	}
}

func loadScript(b *testing.B, s *Store, sc *script) {
	b.Helper()
	if err := s.rdb.ScriptLoad(context.Background(), sc.src).Err(); err != nil {
		b.Fatal(err)
	}
}

// redisCPU is the CPU time redis-server has used, user and system.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_user" && name != "used_cpu_sys") {
			continue
		}
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatal(err)
		}
		total += time.Duration(sec * float64(time.Second))
	}
	return total
}

// sameCommandsVerify runs verifyScript's commands for a wrong code, with
// the least Lua around them: no re-run, tombstone, kept code or previous
// secret, no helper.
var sameCommandsVerify = newScript(guarded + `
local R, aid = KEYS[1], ARGV[5]
local v = redis.call('HMGET', R, 'sh', 'si', 'se', 'sa', 'sc', 'so', 'sg', 'sp1', 'V' .. string.sub(aid, -8), 'T' .. string.sub(aid, -8))
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local nows = string.format('%d', now)
if redis.call('ZCARD', KEYS[2]) >= 100 then return {4, 0, 1, 2} end
if redis.call('HLEN', R) >= 1000000000 then return {4, 0, 1, 1} end
if v[1] == ARGV[2] then return {0, 0, 0, 0} end
local left = tonumber(v[4]) - 1
redis.call('HSET', R, 'sa', string.format('%d', left), 'V' .. string.sub(aid, -8), nows)
redis.call('PEXPIRE', R, ARGV[4], 'GT')
redis.call('ZADD', KEYS[2], nows, aid)
redis.call('PEXPIRE', KEYS[2], ARGV[8])
return {1, left, 0, 0}
`)

// sameCommandsSend runs sendScript's commands for a send to a new
// recipient with its shared slots (KEYS[3..], a window and a count each),
// with the least Lua around them.
var sameCommandsSend = newScript(guarded + `
local R, id = KEYS[1], ARGV[7]
local v = redis.call('HMGET', R, 'sh', 'si', 'se', 'sa', 'sc', 'so', 'sg', 'sd', 'sp1', 'S' .. string.sub(id, -8), 'T' .. string.sub(id, -8))
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local nows = string.format('%d', now)
for i = 3, #KEYS - 1, 2 do
  if redis.call('ZCARD', KEYS[i]) >= 1000000000 then return {6, 0, 1} end
end
redis.call('HLEN', R)
redis.call('HSET', R, 'S' .. string.sub(id, -8), nows, 'sd', nows, 'sh', ARGV[8], 'si', id, 'se', nows, 'sa', ARGV[3], 'sc', ARGV[14])
for i = 3, #KEYS - 1, 2 do
  redis.call('ZADD', KEYS[i], nows, id)
  redis.call('PEXPIRE', KEYS[i], 86400000)
end
redis.call('PEXPIRE', R, ARGV[2])
return {0, 0, 0}
`)

// floorScript is the floor's, answering its count in an array as the
// others answer their status.
var floorScript = newScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n}
`)
