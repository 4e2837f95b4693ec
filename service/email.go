package service

import (
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/otpd/otpd/otp"
)

// One mailbox is one recipient. Every spelling a user can type for the same
// mailbox (case, fullwidth letters, a Unicode or a punycode domain,
// precomposed or decomposed accents) must reach the same cooldown and the
// same windows, or each spelling would buy a fresh guessing budget. So an
// address is canonicalised twice over:
//
//   - for delivery (recipient.addr): NFC, with the domain in its ASCII form
//     (IDNA UTS #46, punycode, lower case), which every mail system accepts.
//     The local part keeps the case it was typed in: RFC 5321 lets a server
//     tell "Jane" from "jane", so otpd delivers what it was asked to.
//   - for keys and limits (recipient.key): the delivery address case-folded
//     (emailKey). Virtually every provider, and the identity servers in
//     front of otpd, treat local parts case-insensitively; a shared limit
//     between two mailboxes that differ only in case costs nothing,
//     separate ones are a bypass.
//
// Tags ("jane+otp@") and dots ("j.a.n.e@gmail.com") are kept in both: they
// name different mailboxes at most providers, and which ones a provider
// folds is its own business.
//
// Characters that do not show are refused outright rather than removed:
// removing them would make two typed strings one recipient silently, and no
// real address needs them.

// parseEmail validates raw as a bare email address and canonicalises it.
// Addresses that are all ASCII, nearly all of them, pay for one scan of
// their bytes on top of net/mail: NFC and IDNA leave them unchanged (but
// for a domain with a punycode label, which IDNA validates).
func parseEmail(raw string, v *violations) (recipient, bool) {
	s := raw
	ascii := true
	for i := range len(raw) {
		if c := raw[i]; c >= utf8.RuneSelf {
			ascii = false
			break
		} else if c < 0x20 || c == 0x7f {
			return refuseInvisible(rune(c), v)
		}
	}
	if !ascii {
		for _, r := range raw {
			if invisible(r) {
				return refuseInvisible(r, v)
			}
		}
		s = norm.NFC.String(raw)
	}
	a, err := mail.ParseAddress(s)
	// Only a bare address is accepted: no display name, no comments, no
	// quoted local part, no surrounding spaces, so what is keyed is exactly
	// what was asked for.
	if err != nil || a.Name != "" || a.Address != s || strings.ContainsFunc(s, unicode.IsSpace) {
		v.add("recipient", "is not a valid email address")
		return recipient{}, false
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	domain, ok := otp.ASCIIDomain(domain)
	if !ok {
		v.add("recipient", "is not a valid email address: the domain is not a valid internationalised domain name")
		return recipient{}, false
	}
	if !hostName(domain) {
		v.add("recipient", "is not a valid email address: the domain must be a fully qualified host name")
		return recipient{}, false
	}
	addr := local + "@" + domain
	if len(addr) > maxRecipientLen {
		v.add("recipient", "must be at most "+strconv.Itoa(maxRecipientLen)+" bytes with its domain in ASCII (punycode) form")
		return recipient{}, false
	}
	return recipient{channel: otp.Email, addr: addr}, true
}

// invisible reports whether r must not appear in an address: a control
// character (Cc), a format character (Cf: zero-width space, joiners, bidi
// marks and overrides, soft hyphen, BOM, tags), or another default-ignorable
// code point (variation selectors, Hangul fillers, the combining grapheme
// joiner). None of them shows, so each would make a look-alike spelling of
// another address.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

func refuseInvisible(r rune, v *violations) (recipient, bool) {
	v.add("recipient", fmt.Sprintf("must not contain control or invisible formatting characters (zero-width, bidirectional, soft hyphen and the like); found %U", r))
	return recipient{}, false
}

// hostName reports whether d is a fully qualified ASCII host name: two or
// more labels of letters, digits and inner hyphens, at most 63 bytes each,
// with a top-level label that is not all digits. IP addresses, bracketed or
// not, are refused.
func hostName(d string) bool {
	labels := strings.Split(d, ".")
	if len(labels) < 2 || len(d) > 253 {
		return false
	}
	for _, l := range labels {
		if !otp.HostLabel(l) {
			return false
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// emailKey is the identity of the delivery address addr for keys and
// limits: addr case-folded, as Unicode's canonical caseless match does it
// (decomposed, folded, composed again, since folding does not preserve
// normal forms). The domain is already lower-case ASCII, and an address in
// lower-case ASCII is its own key.
func emailKey(addr string) string {
	if isASCII(addr) {
		return strings.ToLower(addr)
	}
	return norm.NFC.String(strings.Map(foldRune, norm.NFD.String(addr)))
}

// foldRune maps every letter of a case class to one of them: "K", "k" and
// the Kelvin sign to "k", "Σ", "σ" and "ς" to "σ", "ẞ" to "ß". It is simple
// case folding, one rune for one, which also folds the dotless "ı" to "i"
// (one more shared limit, never one less). golang.org/x/text/cases.Fold is
// not used: it lower-cases before folding, so it swaps the Cherokee letters
// ("Ꭰ" → "ꭰ" → "Ꭰ") instead of folding them, and each case would stay a
// recipient of its own.
func foldRune(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
