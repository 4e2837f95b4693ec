package service

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
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
	return enc(k.recipient.sum(string(r.channel), r.key())[:16])
}

// codeHash binds a code to its recipient and usage type, so that a stored
// hash verifies nothing else.
func (k *keyring) codeHash(recipientID, usage, code string) []byte {
	return k.code.sum(recipientID, usage, code)
}

func (k *keyring) ipID(ip string) string { return "ip:" + enc(k.ip.sum(ip)[:16]) }

func (k *keyring) idempotencyID(key string) string { return enc(k.idem.sum(key)[:16]) }

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

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

// bucket hashes the parts, length-prefixed, to a bucket.
func bucket(parts ...string) string {
	h := sha256.New()
	h.Write([]byte("otpd/v2/bucket"))
	var n [2]byte
	for _, s := range parts {
		n[0], n[1] = byte(len(s)>>8), byte(len(s))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:2])[:bucketHexDigits]
}

func recipientBucket(r recipient) string { return bucket("recipient", string(r.channel), r.key()) }

// ipBucket is the bucket of a client IP's windows (per IP for sends and
// for verifications); ip is an IPv4 address or an IPv6 /64.
func ipBucket(ip string) string { return bucket("ip", ip) }

// hmacPool reuses HMAC states: building one costs two SHA-256 key blocks
// and a few allocations, which adds up on the hot path.
type hmacPool struct{ p *sync.Pool }

func newHMACPool(key []byte) hmacPool {
	return hmacPool{&sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// sum hashes the parts, each length-prefixed so that ("ab","c") and
// ("a","bc") differ.
func (p hmacPool) sum(parts ...string) []byte {
	m := p.p.Get().(hash.Hash)
	m.Reset()
	var n [2]byte
	for _, s := range parts {
		n[0], n[1] = byte(len(s)>>8), byte(len(s))
		m.Write(n[:])
		m.Write([]byte(s))
	}
	out := m.Sum(nil)
	p.p.Put(m)
	return out
}

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
	sl := Slot{Limit: limit, Key: prefix + s.keys.ipID(ip), Bucket: ipBucket(ip), Window: w}
	if len(s.previous) > 0 {
		sl.Previous = make([]string, len(s.previous))
		for i, k := range s.previous {
			sl.Previous[i] = prefix + k.ipID(ip)
		}
	}
	return sl
}

// newID returns a random 128-bit identifier, URL-safe base64.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return enc(b[:])
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
