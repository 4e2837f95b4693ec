package service

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// MinSecretLen is the shortest accepted HMAC secret, in bytes.
const MinSecretLen = 32

// MaxPreviousSecrets bounds Config.PreviousSecrets: each one adds the keys
// it names to every call's script, and a rotation needs one (two while a
// second rotation starts before the first one's wait is over).
const MaxPreviousSecrets = 4

// keyring derives every keyed hash otpd stores from one server secret, with
// a separate subkey per purpose so that no hash can stand in for another.
type keyring struct {
	recipient, code, ip, idem hmacPool
}

// newKeyring derives the subkeys of secret, which Config.Validate has
// checked.
func newKeyring(secret []byte) *keyring {
	derive := func(label string) hmacPool {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("otpd/v1/" + label))
		return newHMACPool(m.Sum(nil))
	}
	return &keyring{
		recipient: derive("recipient"),
		code:      derive("code"),
		ip:        derive("ip"),
		idem:      derive("idempotency"),
	}
}

// recipientID is the recipient's identity in the store: 128 bits of its
// keyed hash, URL-safe base64.
func (k *keyring) recipientID(r recipient) string {
	sum := k.recipient.sum(string(r.channel), r.key())
	return enc16("", "", &sum)
}

// codeHash binds a code to its recipient and usage type, so that a stored
// hash verifies nothing else.
func (k *keyring) codeHash(recipientID, usage, code string) []byte {
	sum := k.code.sum(recipientID, usage, code)
	return sum[:]
}

func (k *keyring) ipID(ip string) string { return k.ipKey("", ip) }

// ipKey is prefix and ipID(ip), in one allocation.
func (k *keyring) ipKey(prefix, ip string) string {
	sum := k.ip.sum(ip)
	return enc16(prefix, "ip:", &sum)
}

func (k *keyring) idempotencyID(key string) string {
	sum := k.idem.sum(key)
	return enc16("", "", &sum)
}

// enc16 is p1, p2 and the first 16 bytes of sum in URL-safe base64, built
// in one allocation: these ids are made several times per call.
func enc16(p1, p2 string, sum *[sha256.Size]byte) string {
	const n = 22 // base64.RawURLEncoding.EncodedLen(16)
	var b [10 + n]byte
	if len(p1)+len(p2) > len(b)-n {
		return p1 + p2 + base64.RawURLEncoding.EncodeToString(sum[:16])
	}
	i := copy(b[:], p1)
	i += copy(b[i:], p2)
	base64.RawURLEncoding.Encode(b[i:], sum[:16])
	return string(b[:i+n])
}

// A bucket is what the store groups a subject's keys by (the Redis Cluster
// hash tag): the same under every secret, so that the keys of one
// recipient under the current and the previous secrets sit in one hash
// slot, where one script can move state from the old ones to the new.
// So no secret enters it, and anyone who reads Redis's keys can compute
// the bucket of a recipient or IP address they guess. What that tells
// them is bounded by the bucket's size: 12 bits of SHA-256, one of 4096
// buckets, each shared by every subject hashed into it. Whether a guessed
// recipient has state at all stays hidden once most buckets hold some
// (a few thousand live recipients); below that, an empty bucket says the
// guess has none. More buckets would say more, fewer would spread a
// Cluster's load less evenly over its masters.
const bucketHexDigits = 3

// bucket hashes the parts, length-prefixed, to a bucket: the first
// bucketHexDigits hex digits of the SHA-256.
func bucket(parts ...string) string {
	var a [128]byte // the usual input, on the stack
	sum := sha256.Sum256(appendParts(append(a[:0], "otpd/v2/bucket"...), parts))
	i := (int(sum[0])<<8 | int(sum[1])) >> (16 - 4*bucketHexDigits)
	return bucketNames()[i*bucketHexDigits : (i+1)*bucketHexDigits]
}

// bucketNames holds the names of every bucket, in order, one after the
// other: a bucket's name is a substring of it, not a new string.
var bucketNames = sync.OnceValue(func() string {
	var b strings.Builder
	n := 1 << (4 * bucketHexDigits)
	b.Grow(n * bucketHexDigits)
	for i := range n {
		fmt.Fprintf(&b, "%0*x", bucketHexDigits, i)
	}
	return b.String()
})

func recipientBucket(r recipient) string { return bucket("recipient", string(r.channel), r.key()) }

// ipBucket is the bucket of a client IP's windows (per IP for sends and
// for verifications); ip is an IPv4 address or an IPv6 /64.
func ipBucket(ip string) string { return bucket("ip", ip) }

// hmacPool reuses HMAC states: building one costs two SHA-256 key blocks
// and a few allocations, which adds up on the hot path. Each state keeps a
// buffer for the message and one for the sum, so that a hash allocates
// nothing.
type hmacPool struct{ p *sync.Pool }

type hmacState struct {
	mac hash.Hash
	msg []byte
	sum [sha256.Size]byte
}

func newHMACPool(key []byte) hmacPool {
	return hmacPool{&sync.Pool{New: func() any { return &hmacState{mac: hmac.New(sha256.New, key)} }}}
}

// sum hashes the parts, each length-prefixed so that ("ab","c") and
// ("a","bc") differ.
func (p hmacPool) sum(parts ...string) [sha256.Size]byte {
	st := p.p.Get().(*hmacState)
	msg := appendParts(st.msg[:0], parts)
	st.mac.Reset()
	st.mac.Write(msg)
	out := [sha256.Size]byte(st.mac.Sum(st.sum[:0]))
	if cap(msg) <= maxPooledMessage {
		st.msg = msg
	}
	p.p.Put(st)
	return out
}

// appendParts appends the parts to b, each preceded by its length in two
// bytes, so that ("ab","c") and ("a","bc") differ.
func appendParts(b []byte, parts []string) []byte {
	for _, s := range parts {
		b = append(b, byte(len(s)>>8), byte(len(s)))
		b = append(b, s...)
	}
	return b
}

// maxPooledMessage bounds the message buffer a pooled state keeps.
const maxPooledMessage = 1 << 10

// storeRecipient is r as the store knows it: its ids under the current
// and every previous secret, and its bucket.
func (s *Service) storeRecipient(r recipient) Recipient {
	out := Recipient{ID: s.keys.recipientID(r), Bucket: recipientBucket(r)}
	if len(s.previous) > 0 {
		out.Previous = make([]string, len(s.previous))
		for i, k := range s.previous {
			out.Previous[i] = k.recipientID(r)
		}
	}
	return out
}

// storeIdempotencyKey is a caller's idempotency key as the store knows it.
func (s *Service) storeIdempotencyKey(key string) IdempotencyKey {
	out := IdempotencyKey{ID: s.keys.idempotencyID(key)}
	if len(s.previous) > 0 {
		out.Previous = make([]string, len(s.previous))
		for i, k := range s.previous {
			out.Previous[i] = k.idempotencyID(key)
		}
	}
	return out
}

// codeHashes hashes code for r and usage under the current secret and
// under each previous one: a code stored under any of them verifies.
func (s *Service) codeHashes(r Recipient, usage, code string) (current []byte, previous [][]byte) {
	current = s.keys.codeHash(r.ID, usage, code)
	if len(s.previous) > 0 {
		previous = make([][]byte, len(s.previous))
		for i, k := range s.previous {
			previous[i] = k.codeHash(r.Previous[i], usage, code)
		}
	}
	return current, previous
}

// ipSlot is the window of limit for a client IP; prefix tells the send
// window ("") from the verification one ("v") of the same IP.
func (s *Service) ipSlot(limit, prefix, ip string, w Window) Slot {
	sl := Slot{Limit: limit, Key: s.keys.ipKey(prefix, ip), Bucket: ipBucket(ip), Window: w}
	if len(s.previous) > 0 {
		sl.Previous = make([]string, len(s.previous))
		for i, k := range s.previous {
			sl.Previous[i] = k.ipKey(prefix, ip)
		}
	}
	return sl
}

// newID returns a random 128-bit identifier, URL-safe base64.
func newID() string {
	var b [sha256.Size]byte
	_, _ = rand.Read(b[:16]) // crypto/rand.Read never fails on supported platforms
	return enc16("", "", &b)
}

// newCode returns a code of n decimal digits from crypto/rand, free of
// modulo bias: bytes of 250 and more are rejected and drawn again.
func newCode(n int) string {
	out := make([]byte, n)
	var buf [16]byte
	for i := 0; i < n; {
		_, _ = rand.Read(buf[:])
		for _, b := range buf {
			if b >= 250 {
				continue
			}
			out[i] = '0' + b%10
			i++
			if i == n {
				break
			}
		}
	}
	return string(out)
}
