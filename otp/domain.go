package otp

import (
	"strings"

	"golang.org/x/net/idna"
)

// idnaProfile maps a domain to the ASCII form that DNS and mail servers use:
// the UTS #46 mapping for lookup (case, width and compatibility forms folded,
// NFC), nontransitional ("ß" and "ς" stay themselves, as in IDNA2008), with
// label validity, joiner (ContextJ) and bidi checks and DNS lengths. Hyphens
// are left to hostName: "ab--cd" is a valid ASCII label, and an ASCII domain
// must come out the same by the fast path as through this profile.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.CheckJoiners(true),
	idna.CheckHyphens(false),
	idna.VerifyDNSLength(true),
)

// ASCIIDomain returns the ASCII form of the email domain d, the form mail
// is delivered to and that recipients and provider routing compare, or
// false when d is not a valid IDNA domain name. An ASCII domain is only lower-cased, unless
// one of its labels is punycode ("xn--"), which is decoded, validated and
// encoded again so that only its canonical form is accepted.
func ASCIIDomain(d string) (string, bool) {
	if isASCII(d) {
		d = strings.ToLower(d)
		if !strings.Contains(d, "xn--") {
			return d, true
		}
	}
	a, err := idnaProfile.ToASCII(d)
	if err != nil {
		return "", false
	}
	// x/net/idna applies the bidi rule to the labels as typed, not as
	// mapped: "aℵb" passes, and maps to "aאb", which does not. The ASCII
	// form is what is delivered to and what the same address typed in
	// punycode gives, so it must pass on its own.
	if a != d {
		if again, err := idnaProfile.ToASCII(a); err != nil || again != a {
			return "", false
		}
	}
	return a, true
}

// HostLabel reports whether l is a label of an ASCII host name: 1 to 63
// bytes of lower-case letters, digits and inner hyphens.
func HostLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := range len(l) {
		if c := l[i]; c != '-' && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
