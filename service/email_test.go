package service

import (
	"strings"
	"testing"
	"unicode"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// TestParseEmailCanonical: what each spelling is delivered to, or that it is
// refused with one violation on recipient that does not quote the address.
func TestParseEmailCanonical(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		want      string // the delivery address; empty when refused
	}{
		// Case: the domain is lower-cased, the local part delivered as typed.
		{"lower case", "jane@example.com", "jane@example.com"},
		{"mixed case", "Jane@Example.COM", "Jane@example.com"},
		{"upper case", "JANE@EXAMPLE.COM", "JANE@example.com"},
		// Width and compatibility forms of the domain map to ASCII (UTS #46).
		{"fullwidth domain", "jane@ｅｘａｍｐｌｅ.com", "jane@example.com"},
		{"fullwidth upper-case TLD", "jane@EXAMPLE.ＣＯＭ", "jane@example.com"},
		{"fullwidth full stop", "jane@example．com", "jane@example.com"},
		{"ideographic full stop", "jane@example。com", "jane@example.com"},
		{"roman numeral", "jane@Ⅻ.com", "jane@xii.com"},
		// IDN and punycode: one ASCII form.
		{"IDN domain", "jane@exämple.com", "jane@xn--exmple-cua.com"},
		{"IDN domain, upper case", "jane@EXÄMPLE.COM", "jane@xn--exmple-cua.com"},
		{"punycode domain", "jane@xn--exmple-cua.com", "jane@xn--exmple-cua.com"},
		{"punycode domain, upper case", "jane@XN--EXMPLE-CUA.COM", "jane@xn--exmple-cua.com"},
		{"IDN domain, decomposed (NFD)", "jane@exa\u0308mple.com", "jane@xn--exmple-cua.com"},
		{"IDN TLD", "jane@例子.测试", "jane@xn--fsqu00a.xn--0zwm56d"},
		{"right-to-left domain", "jane@\u05d0\u05d1.com", "jane@xn--4dbc.com"},
		{"sharp s kept in the domain (nontransitional)", "jane@faß.de", "jane@xn--fa-hia.de"},
		{"hyphens in 3rd and 4th place", "jane@ab--cd.com", "jane@ab--cd.com"},
		// The local part: NFC, as typed.
		{"composed local part (NFC)", "j\u00f6ne@example.com", "j\u00f6ne@example.com"},
		{"decomposed local part (NFD)", "jo\u0308ne@example.com", "j\u00f6ne@example.com"},
		{"decomposed everywhere", "JO\u0308NE@EXA\u0308MPLE.COM", "J\u00d6NE@xn--exmple-cua.com"},
		{"Kelvin sign is K (NFC)", "\u212aate@example.com", "Kate@example.com"},
		{"non-Latin local part", "用户@example.com", "用户@example.com"},
		// Kept as they are: other mailboxes at most providers.
		{"plus tag", "jane+otp@example.com", "jane+otp@example.com"},
		{"dots", "j.a.n.e@gmail.com", "j.a.n.e@gmail.com"},

		// Invisible characters, anywhere.
		{"zero-width space", "ja\u200bne@example.com", ""},
		{"zero-width non-joiner", "ja\u200cne@example.com", ""},
		{"zero-width joiner", "ja\u200dne@example.com", ""},
		{"soft hyphen", "jane\u00ad@example.com", ""},
		{"byte order mark", "\ufeffjane@example.com", ""},
		{"word joiner", "jane\u2060@example.com", ""},
		{"left-to-right mark", "jane\u200e@example.com", ""},
		{"right-to-left mark", "jane\u200f@example.com", ""},
		{"right-to-left override", "\u202ejane@example.com", ""},
		{"left-to-right embedding", "\u202ajane@example.com", ""},
		{"bidi isolates", "\u2066jane\u2069@example.com", ""},
		{"tag character", "jane\U000e0041@example.com", ""},
		{"variation selector", "jane\ufe0f@example.com", ""},
		{"combining grapheme joiner", "jane\u034f@example.com", ""},
		{"Hangul filler", "\u3164@example.com", ""},
		{"C1 control", "jane\u0080@example.com", ""},
		{"next line", "jane\u0085@example.com", ""},
		{"NUL", "jane\x00@example.com", ""},
		{"DEL", "jane\x7f@example.com", ""},
		{"CRLF", "jane@example.com\r\nBcc: x@example.com", ""},
		{"soft hyphen in the domain", "jane@exa\u00admple.com", ""},
		{"zero-width space in the domain", "jane@exa\u200bmple.com", ""},
		{"zero-width non-joiner in the domain", "jane@exam\u200cple.com", ""},
		// Domains IDNA refuses.
		{"punycode of plain ASCII", "jane@xn--example-.com", ""},
		{"invalid punycode", "jane@xn--zz.com", ""},
		{"bidi rule", "jane@a\u05d0.com", ""},
		{"bidi rule, once mapped", "jane@a\u2135b.com", ""},
		{"compatibility form holding a dot", "jane@⒈.com", ""},
		{"fullwidth at sign", "jane＠example.com", ""},
		{"trailing ideographic full stop", "jane@example.com。", ""},
		{"fullwidth digits are still an IP address", "jane@１９２.０.２.１", ""},
		{"NFD domain label too long once in punycode", "jane@" + strings.Repeat("a", 60) + "u\u0308.com", ""},
		{"too long once in punycode", strings.Repeat("j", 30) + "@" + strings.Repeat(strings.Repeat("a", 50)+"ü.", 4) + "com", ""},
		// Kept from before.
		{"quoted local part", `"jane"@example.com`, ""},
		{"quoted local part with a special", `"ja(ne"@example.com`, ""},
		{"display name", "Jane <jane@example.com>", ""},
		{"IP literal", "jane@[192.0.2.1]", ""},
		{"no dot in the domain", "jane@localhost", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var v violations
			got, ok := parseRecipient(tt.raw, otpv1.Channel_CHANNEL_EMAIL, &v)
			if tt.want != "" {
				if !ok || got != (recipient{channel: otp.Email, addr: tt.want}) {
					t.Fatalf("parseRecipient(%q) = %+v, %v (%v); want %q", tt.raw, got, ok, v.list, tt.want)
				}
				return
			}
			if ok {
				t.Fatalf("parseRecipient(%q) = %q, want it refused", tt.raw, got.addr)
			}
			if len(v.list) != 1 || v.list[0].GetField() != "recipient" || v.list[0].GetDescription() == "" {
				t.Fatalf("parseRecipient(%q): violations %v, want one on recipient", tt.raw, v.list)
			}
			if d := v.list[0].GetDescription(); strings.Contains(d, "jane") || strings.Contains(d, "example") {
				t.Errorf("parseRecipient(%q): description %q quotes the address", tt.raw, d)
			}
		})
	}
}

// TestEmailInvisibleNamesTheCharacter: the refusal says which character,
// since the caller cannot see it.
func TestEmailInvisibleNamesTheCharacter(t *testing.T) {
	t.Parallel()
	var v violations
	if _, ok := parseRecipient("ja\u200bne@example.com", otpv1.Channel_CHANNEL_UNSPECIFIED, &v); ok || len(v.list) != 1 ||
		!strings.Contains(v.list[0].GetDescription(), "U+200B") || !strings.Contains(v.list[0].GetDescription(), "zero-width") {
		t.Errorf("violations %v, want one naming U+200B", v.list)
	}
}

// TestEmailSpellingsShareOneRecipient: every spelling of one mailbox has the
// same recipient id, so one cooldown and one set of windows; different
// mailboxes never do.
func TestEmailSpellingsShareOneRecipient(t *testing.T) {
	t.Parallel()
	k := testKeyring(t, secretA)
	mailboxes := map[string][]string{
		"jane@example.com": {
			"jane@example.com", "Jane@example.com", "JANE@EXAMPLE.COM", "jAnE@ExAmPlE.cOm",
			"jane@ｅｘａｍｐｌｅ.com", "JANE@ＥＸＡＭＰＬＥ.ＣＯＭ", "jane@example。com",
		},
		"jöne@exämple.com": {
			"j\u00f6ne@ex\u00e4mple.com", "jo\u0308ne@ex\u00e4mple.com", "j\u00f6ne@exa\u0308mple.com",
			"jo\u0308ne@exa\u0308mple.com", "J\u00d6NE@EX\u00c4MPLE.COM", "JO\u0308NE@EXA\u0308MPLE.COM",
			"j\u00f6ne@xn--exmple-cua.com", "J\u00f6ne@XN--EXMPLE-CUA.COM", "jo\u0308ne@xn--exmple-cua.com",
		},
		// Simple case folding: one letter for one.
		"straße@example.com":   {"straße@example.com", "STRAẞE@example.com", "Straße@EXAMPLE.com"},
		"strasse@example.com":  {"strasse@example.com", "STRASSE@example.com"},
		"οδυσσευς@example.com": {"οδυσσευς@example.com", "ΟΔΥΣΣΕΥΣ@example.com", "Οδυσσευσ@example.com"},
		"kate@example.com":     {"kate@example.com", "Kate@example.com", "\u212aate@example.com"},
		"i̇@example.com":       {"\u0130@example.com", "i\u0307@example.com", "I\u0307@example.com"},
		"i@example.com":        {"i@example.com", "I@example.com", "\u0131@example.com"},
		// Cherokee folds too (x/text's cases.Fold swaps it instead).
		"Ꭰ@example.com": {"\u13a0@example.com", "\uab70@example.com"},
		// Each of these is its own mailbox.
		"jane+otp@example.com": {"jane+otp@example.com", "Jane+OTP@Example.com"},
		"j.a.n.e@example.com":  {"j.a.n.e@example.com", "J.A.N.E@example.com"},
		"jane@googlemail.com":  {"jane@googlemail.com"},
		"jane@exämple.com":     {"jane@exämple.com", "JANE@xn--exmple-cua.com"},
		"jane@faß.de":          {"jane@faß.de", "jane@FAß.DE", "jane@xn--fa-hia.de"},
		"jane@fass.de":         {"jane@fass.de", "jane@FASS.DE"},
	}
	owner := map[string]string{} // recipient id → mailbox
	for mailbox, spellings := range mailboxes {
		first := ""
		for _, s := range spellings {
			var v violations
			r, ok := parseRecipient(s, otpv1.Channel_CHANNEL_UNSPECIFIED, &v)
			if !ok {
				t.Fatalf("%s: %q refused: %v", mailbox, s, v.list)
			}
			id := k.recipientID(r)
			if first == "" {
				first = id
				if other, taken := owner[id]; taken {
					t.Errorf("%s and %s share a recipient id", mailbox, other)
				}
				owner[id] = mailbox
			} else if id != first {
				t.Errorf("%s: %q (key %q) is another recipient than %q", mailbox, s, r.key(), spellings[0])
			}
		}
	}
}

// TestFoldRuneFoldsEveryCaseClass: over every code point, the letters that
// differ only in case (unicode.SimpleFold's orbits) fold to one letter,
// which folds to itself.
func TestFoldRuneFoldsEveryCaseClass(t *testing.T) {
	t.Parallel()
	for r := rune(0); r <= unicode.MaxRune; r++ {
		o := unicode.SimpleFold(r)
		if o == r {
			continue
		}
		if f := foldRune(r); foldRune(o) != f || foldRune(f) != f {
			t.Errorf("%U folds to %U, %U (same case class) to %U, %U to %U", r, f, o, foldRune(o), f, foldRune(f))
		}
	}
}

// TestEmailKeyKeepsLowerCaseASCII: for an address typed in lower-case
// ASCII, as nearly all are, the key is the address itself, so codes and
// limits stored before keys were case-folded are found again.
func TestEmailKeyKeepsLowerCaseASCII(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"jane@example.com", "j.a.n.e+otp@mail.example.co.uk"} {
		if r := (recipient{channel: otp.Email, addr: addr}); r.key() != addr {
			t.Errorf("key(%q) = %q", addr, r.key())
		}
	}
	if r := (recipient{channel: otp.SMS, addr: "+14155550123"}); r.key() != r.addr {
		t.Errorf("key(%q) = %q, want the number", r.addr, r.key())
	}
}

// BenchmarkEmailRecipient: parsing an email recipient and deriving its id,
// the per-call cost an email send or verify pays before any Redis work.
func BenchmarkEmailRecipient(b *testing.B) {
	k := testKeyring(b, secretA)
	for _, bc := range []struct{ name, raw string }{
		{"ascii", "jane.doe@example.com"},
		{"ascii_mixed_case", "Jane.Doe@Example.COM"},
		{"ascii_punycode", "jane.doe@xn--exmple-cua.com"},
		{"idn", "jöne@exämple.com"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var v violations
				r, ok := parseRecipient(bc.raw, otpv1.Channel_CHANNEL_UNSPECIFIED, &v)
				if !ok {
					b.Fatal(v.list)
				}
				_ = k.recipientID(r)
			}
		})
	}
}
