package service

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/otpd/otpd/otp"
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

// FuzzCanonicalEmail: any input is refused with one violation on recipient
// that does not quote it, or canonicalised to a delivery address that is
// valid UTF-8, NFC, at most 254 bytes, with a lower-case ASCII domain that
// IDNA maps to itself, and that parses again to itself. Its key is a fixed
// point of the key function. A spelling that differs only by canonical
// decomposition (NFD) or by the case of ASCII letters is the same
// recipient. Nothing holding a control, format or other default-ignorable
// character is accepted.
func FuzzCanonicalEmail(f *testing.F) {
	for _, s := range []string{
		"jane@example.com", "Jane@Example.COM", "jane@ｅｘａｍｐｌｅ.com", "jane@exämple.com", "jane@xn--exmple-cua.com",
		"jo\u0308ne@exa\u0308mple.com", "ja\u200bne@example.com", "jane\u00ad@example.com", "\u202ejane@example.com",
		"straße@faß.de", "\u0130@example.com", "ΟΔΥΣΣΕΥΣ@ΟΔΥΣΣΕΥΣ.gr", "\u212aate@example.com", "用户@例子.测试",
		"jane@\u05d0\u05d1.com", "jane@xn--ls8h.la", `"ja(ne"@example.com`, "jane@[192.0.2.1]", "jane@example.com.", "a@b@c",
		"\u13a0\uab71@example.com", "jane@a\u2135b.com", "\u1fb3\u0301@example.com", "\u0131@example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var v violations
		r, ok := parseRecipient(raw, otpv1.Channel_CHANNEL_EMAIL, &v)
		if !ok {
			if len(v.list) != 1 || v.list[0].GetField() != "recipient" || v.list[0].GetDescription() == "" {
				t.Fatalf("%q refused with violations %v, want one on recipient", raw, v.list)
			}
			// No description holds an "@": one that held the input would.
			if strings.Contains(raw, "@") && strings.Contains(v.list[0].GetDescription(), raw) {
				t.Fatalf("%q: description %q quotes the address", raw, v.list[0].GetDescription())
			}
			return
		}
		if len(v.list) != 0 || r.channel != "email" || r.country != "" {
			t.Fatalf("%q accepted as %+v with violations %v", raw, r, v.list)
		}
		if i := strings.IndexFunc(raw, func(c rune) bool {
			return unicode.In(c, unicode.Cc, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
		}); i >= 0 {
			t.Fatalf("%q accepted as %q despite %U", raw, r.addr, []rune(raw[i:])[0])
		}
		addr := r.addr
		if !utf8.ValidString(addr) || !norm.NFC.IsNormalString(addr) || len(addr) > maxRecipientLen {
			t.Fatalf("%q accepted as %q: not NFC, or too long", raw, addr)
		}
		domain := addr[strings.LastIndexByte(addr, '@')+1:]
		if !isASCII(domain) || strings.ToLower(domain) != domain {
			t.Fatalf("%q accepted as %q: domain not lower-case ASCII", raw, addr)
		}
		if d, ok := otp.ASCIIDomain(domain); !ok || d != domain {
			t.Fatalf("%q accepted as %q: IDNA maps its domain to %q (%v)", raw, addr, d, ok)
		}
		var v2 violations
		if again, ok := parseRecipient(addr, otpv1.Channel_CHANNEL_UNSPECIFIED, &v2); !ok || again != r {
			t.Fatalf("%q canonicalised to %q, which parses to %+v (%v)", raw, addr, again, v2.list)
		}
		key := r.key()
		if !utf8.ValidString(key) || !norm.NFC.IsNormalString(key) || emailKey(key) != key {
			t.Fatalf("%q: key %q is not a fixed point (%q)", raw, key, emailKey(key))
		}
		// Other spellings of the same mailbox.
		flipped := strings.Map(func(c rune) rune {
			switch {
			case 'a' <= c && c <= 'z':
				return c - 'a' + 'A'
			case 'A' <= c && c <= 'Z':
				return c - 'A' + 'a'
			}
			return c
		}, raw)
		for _, s := range []string{norm.NFD.String(raw), flipped} {
			if len(s) > maxRecipientLen {
				continue
			}
			var v3 violations
			other, ok := parseRecipient(s, otpv1.Channel_CHANNEL_EMAIL, &v3)
			if !ok || other.key() != key {
				t.Fatalf("%q (key %q) and %q (key %q, %v): one mailbox, two recipients", raw, key, s, other.key(), v3.list)
			}
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
		_, ip, ok := parseClientIP(raw, &v)
		if ok != (len(v.list) == 0) {
			t.Fatalf("%q: ok=%v with violations %v", raw, ok, v.list)
		}
		if ok && raw != "" && (ip == "" || strings.ContainsAny(ip, "% ")) {
			t.Fatalf("%q → %q", raw, ip)
		}
	})
}
