package service

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"sync"
)

// MinSecretLen is the shortest accepted HMAC secret, in bytes.
const MinSecretLen = 32

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
