package service

import (
	"strings"
	"testing"
	"unicode/utf8"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// FuzzParseRecipient: any input either normalises to a recipient that
// parses again to itself, or is refused with a violation; it never panics.
func FuzzParseRecipient(f *testing.F) {
	for _, s := range []string{"+8613800138000", "+1 (415) 555-0123", "jane@Example.COM", "a@b@c", "", "+", "@", "+٣٣", "jané@exämple.fr", "\x00@x.y"} {
		f.Add(s, int32(0))
		f.Add(s, int32(1))
		f.Add(s, int32(2))
	}
	f.Fuzz(func(t *testing.T, raw string, ch int32) {
		var v violations
		r, ok := parseRecipient(raw, otpv1.Channel(ch), &v)
		if !ok {
			if len(v.list) == 0 {
				t.Fatalf("%q refused without a violation", raw)
			}
			return
		}
		if len(v.list) != 0 || r.addr == "" || !utf8.ValidString(r.addr) {
			t.Fatalf("%q accepted as %+v with violations %v", raw, r, v.list)
		}
		var v2 violations
		again, ok := parseRecipient(r.addr, otpv1.Channel_CHANNEL_UNSPECIFIED, &v2)
		if !ok || again != r {
			t.Fatalf("%q normalised to %q, which parses to %+v (%v)", raw, r.addr, again, v2.list)
		}
		if r.channel == "sms" && (!strings.HasPrefix(r.addr, "+") || r.country == "") {
			t.Fatalf("%q: phone %+v lacks + or country", raw, r)
		}
	})
}

// FuzzParseClientIP: never panics; accepted addresses are canonical.
func FuzzParseClientIP(f *testing.F) {
	for _, s := range []string{"203.0.113.9", "::ffff:1.2.3.4", "2001:db8::1%eth0", "fe80::1", "", "1.2.3", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var v violations
		ip, ok := parseClientIP(raw, &v)
		if ok != (len(v.list) == 0) {
			t.Fatalf("%q: ok=%v with violations %v", raw, ok, v.list)
		}
		if ok && raw != "" && (ip == "" || strings.ContainsAny(ip, "% ")) {
			t.Fatalf("%q → %q", raw, ip)
		}
	})
}
