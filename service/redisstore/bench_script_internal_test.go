package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
// Each call goes through the store as a real one does (Store.verify and
// Store.beginSend build its keys and arguments; a same-commands variant
// stands in for the script), from 50 goroutines, so that the batcher
// pipelines them as under load. Each sub-benchmark starts from an empty
// redis-server. The machine drifts: run the benchmark several times
// (-count repeats each sub-benchmark back to back; make bench-scripts
// interleaves five runs) and take medians:
//
//	for i in 1 2 3 4 5; do go test ./service/redisstore -run '^$' -bench ScriptRedisCPU -benchtime 20000x; done
func BenchmarkScriptRedisCPU(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	s := New(rdb, "")
	for _, bc := range []struct {
		name   string
		script **script // the script the store runs, replaced by with
		with   *script
		setup  func(b *testing.B, s *Store) func(ctx context.Context, i int) error
	}{
		{"verify", &verifyScript, verifyScript, benchVerify},
		{"verify/same-commands", &verifyScript, sameCommandsVerify, benchVerify},
		{"send", &sendScript, sendScript, benchSend},
		{"send/same-commands", &sendScript, sameCommandsSend, benchSend},
		{"floor", &floorScript, floorScript, benchFloor},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			call := bc.setup(b, s)
			orig := *bc.script
			*bc.script = bc.with
			defer func() { *bc.script = orig }()
			defer redistest.ReportCPU(b, rdb)()
			b.ResetTimer()
			var (
				wg   sync.WaitGroup
				next atomic.Int64
			)
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1)) - 1; i < b.N; i = int(next.Add(1)) - 1 {
						if err := call(ctx, i); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
		})
	}
}

// benchVerify stores a live code for each of 2000 recipients and returns
// the i-th call: a wrong code for one of them, from a client IP of its
// own, which must answer MISMATCH.
func benchVerify(b *testing.B, s *Store) func(context.Context, int) error {
	b.Helper()
	const pool = 2000
	recs := make([]service.Recipient, pool)
	for i := range recs {
		recs[i] = service.Recipient{Bucket: strconv.Itoa(i % 4096), ID: fmt.Sprintf("r%021d", i)}
		p := service.SendParams{Recipient: recs[i], Usage: "sign_in", CodeHash: []byte("0123456789abcdef"), VerificationID: fmt.Sprintf("v%021d", i),
			Now: time.Now(), TTL: 10 * time.Minute, MaxAttempts: 100, Cooldown: time.Minute,
			PerRecipient: service.Window{Count: 5, Window: 10 * time.Minute}, Credit: "0123456789abcdef012345678"}
		if _, err := s.beginSend(context.Background(), p, nil); err != nil {
			b.Fatal(err)
		}
	}
	return func(ctx context.Context, i int) error {
		ip := &service.Slot{Key: "vip:" + strconv.Itoa(i), Bucket: strconv.Itoa(i % 4096), Window: service.Window{Count: 100, Window: time.Hour}}
		res, err := s.verify(ctx, service.VerifyParams{Recipient: recs[i%pool], Usage: "sign_in", CodeHash: []byte("wrong-code-hash!"), Now: time.Now(),
			PerRecipient: service.Window{Count: 1000000000, Window: time.Hour}, PerIP: ip, AttemptID: fmt.Sprintf("a%021d", i), Grace: time.Minute}, true)
		if err == nil && res.Status != service.VerifyMismatch {
			err = fmt.Errorf("verify answered %+v, want a mismatch", res)
		}
		return err
	}
}

// benchSend fills the country's two windows with 100,000 events each, as
// the load test leaves them, and returns the i-th call: a send to a new
// recipient from a new client IP, which must be accepted.
func benchSend(b *testing.B, s *Store) func(context.Context, int) error {
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
	rule := &service.ConversionRule{MinUnverified: 1000000000, Ratio: 0.2}
	return func(ctx context.Context, i int) error {
		bucket, ip, id := strconv.Itoa(i%4096), "ip:"+strconv.Itoa(i), fmt.Sprintf("v%021d", i)
		slots := []service.Slot{
			{Key: ip, Bucket: bucket, Window: service.Window{Count: 20, Window: time.Hour}},
			{Key: "cc:1", Window: service.Window{Count: 1000000000, Window: time.Hour}},
			{Key: "cv:cc:1", Window: service.Window{Window: 24 * time.Hour}, Conversion: rule},
			{Key: "cv" + ip, Bucket: bucket, Window: service.Window{Window: 24 * time.Hour}, Conversion: rule},
		}
		res, err := s.beginSend(ctx, service.SendParams{Recipient: service.Recipient{Bucket: bucket, ID: "r" + id}, Usage: "sign_in",
			CodeHash: []byte("0123456789abcdef"), VerificationID: id, Now: time.Now(), TTL: 10 * time.Minute, MaxAttempts: 100,
			Cooldown: time.Minute, PerRecipient: service.Window{Count: 5, Window: 10 * time.Minute}, Credit: bucket + "0123456789abcdef0123"}, slots)
		if err == nil && res.Status != service.SendAccepted {
			err = fmt.Errorf("send answered %+v, want accepted", res)
		}
		return err
	}
}

// benchFloor returns the i-th call of the floor's script, on a new key.
func benchFloor(b *testing.B, s *Store) func(context.Context, int) error {
	b.Helper()
	return func(ctx context.Context, i int) error {
		_, err := s.run(ctx, floorScript, []string{"floor:{r" + strconv.Itoa(i) + "}"}, 600000)
		return err
	}
}

// sameCommandsVerify runs verifyScript's commands for a wrong code, with
// the least Lua around them: no re-run, tombstone, kept code or previous
// secret, no helper. Its arguments are verifyScript's.
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
// with the least Lua around them. Its arguments are sendScript's.
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

// floorScript is the floor's.
var floorScript = newScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)
