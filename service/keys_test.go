package service

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"testing"

	"github.com/otpd/otpd/otp"
)

// TestKeysStable pins every keyed hash and bucket otpd stores: a change
// would strand every live code, window and cooldown in Redis at the
// upgrade. The want values are what otpd computed before its hashing was
// reworked for speed; the reference functions below say how in plain
// crypto/hmac, and random inputs must agree with them too.
func TestKeysStable(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef-golden")
	k := newKeyring(secret)
	sms := recipient{channel: otp.SMS, addr: "+14155550123", country: "1"}
	email := recipient{channel: otp.Email, addr: "Jane.Doe@example.com"}
	for _, tt := range []struct{ name, got, want string }{
		{"recipientID sms", k.recipientID(sms), "RF9GdvERBP-BHPMCBejJng"},
		{"recipientID email", k.recipientID(email), "n9ToguZdjVPfzfDfolmXiw"},
		{"codeHash", hex.EncodeToString(k.codeHash(k.recipientID(sms), "sign_in", "123456")), "89d4e3424705dd68bbdb754b9402a37016b2d9148ea625564bb0c855f8b47e73"},
		{"ipID v4", k.ipID("203.0.113.9"), "ip:kXL0uzgEGfRrjbR_hu8Z6w"},
		{"ipID v6", k.ipID("2001:db8:1:2::/64"), "ip:ky5bYDrNgc6djSMX6Ml85Q"},
		{"idempotencyID", k.idempotencyID("key-1"), "iw2_2hjY7vPpIzLljPNJPA"},
		{"recipientBucket sms", recipientBucket(sms), "1e6"},
		{"recipientBucket email", recipientBucket(email), "c91"},
		{"ipBucket", ipBucket("203.0.113.9"), "cf1"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}

	// Inputs of every length up to past the buffers on the stack and in
	// the pool, so that each path is taken.
	for n := range 300 {
		s := ""
		for i := range n {
			s += strconv.Itoa(i % 10)
		}
		r := recipient{channel: otp.SMS, addr: "+" + s}
		if got, want := k.recipientID(r), refID(secret, "recipient", string(r.channel), r.key()); got != want {
			t.Errorf("recipientID(%d bytes) = %q, want %q", n, got, want)
		}
		if got, want := hex.EncodeToString(k.codeHash(s, "sign_in", "123456")), hex.EncodeToString(refMAC(secret, "code", s, "sign_in", "123456")); got != want {
			t.Errorf("codeHash(%d bytes) = %s, want %s", n, got, want)
		}
		if got, want := k.ipID(s), "ip:"+refID(secret, "ip", s); got != want {
			t.Errorf("ipID(%d bytes) = %q, want %q", n, got, want)
		}
		if got, want := k.idempotencyID(s), refID(secret, "idempotency", s); got != want {
			t.Errorf("idempotencyID(%d bytes) = %q, want %q", n, got, want)
		}
		if got, want := bucket("recipient", "sms", s), refBucket("recipient", "sms", s); got != want {
			t.Errorf("bucket(%d bytes) = %q, want %q", n, got, want)
		}
	}
	// The window keys of an IP: its id behind the window's prefix, short
	// or (no such prefix today) long.
	for _, prefix := range []string{"", "v", conversionPrefix, "0123456789"} {
		if got, want := k.ipKey(prefix, "203.0.113.9"), prefix+k.ipID("203.0.113.9"); got != want {
			t.Errorf("ipKey(%q) = %q, want %q", prefix, got, want)
		}
	}
	if id := newID(); len(id) != 22 {
		t.Errorf("newID() = %q, want 22 characters", id)
	}
}

// refMAC is the HMAC-SHA256 under the subkey for label of the parts, each
// prefixed with its length in two bytes.
func refMAC(secret []byte, label string, parts ...string) []byte {
	sub := hmac.New(sha256.New, secret)
	sub.Write([]byte("otpd/v1/" + label))
	m := hmac.New(sha256.New, sub.Sum(nil))
	for _, p := range parts {
		m.Write([]byte{byte(len(p) >> 8), byte(len(p))})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

func refID(secret []byte, label string, parts ...string) string {
	return base64.RawURLEncoding.EncodeToString(refMAC(secret, label, parts...)[:16])
}

func refBucket(parts ...string) string {
	h := sha256.New()
	h.Write([]byte("otpd/v2/bucket"))
	for _, p := range parts {
		h.Write([]byte{byte(len(p) >> 8), byte(len(p))})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))[:bucketHexDigits]
}
