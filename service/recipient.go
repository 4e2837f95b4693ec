package service

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// Input size limits: anything longer is rejected before any work is done.
const (
	maxRecipientLen      = 254 // RFC 5321 path limit; E.164 is far shorter
	maxLocaleLen         = 35
	maxClientIPLen       = 64
	maxIdempotencyKeyLen = 128
	maxCodeInputLen      = 32
)

// recipient is a validated, normalised recipient.
type recipient struct {
	channel otp.Channel
	// addr is where the code is delivered: the E.164 number, or the
	// email address in NFC with its domain in lower-case ASCII (see
	// parseEmail).
	addr string
	// country is the country calling code of a phone number ("86"), empty
	// for email.
	country string
}

// key is the recipient's identity for codes and limits, which
// keyring.recipientID hashes: the E.164 number, or the email address
// case-folded (emailKey), so that every spelling of one mailbox is one
// recipient.
func (r recipient) key() string {
	if r.channel == otp.Email {
		return emailKey(r.addr)
	}
	return r.addr
}

// phoneParser turns a phone number into a recipient: parsePhone, or a
// phoneCache's parse.
type phoneParser func(raw string, v *violations) (recipient, bool)

// parseRecipient validates raw against the requested channel (inferring it
// when unspecified) and normalises it; phone numbers go to parsePhone.
func parseRecipient(raw string, ch otpv1.Channel, v *violations) (recipient, bool) {
	return parseRecipientWith(raw, ch, v, parsePhone)
}

func parseRecipientWith(raw string, ch otpv1.Channel, v *violations, phone phoneParser) (recipient, bool) {
	switch {
	case raw == "":
		v.add("recipient", "must be set to an E.164 phone number or an email address")
		return recipient{}, false
	case len(raw) > maxRecipientLen:
		v.add("recipient", "must be at most "+strconv.Itoa(maxRecipientLen)+" bytes")
		return recipient{}, false
	case !utf8.ValidString(raw):
		v.add("recipient", "must be valid UTF-8")
		return recipient{}, false
	}
	switch ch {
	case otpv1.Channel_CHANNEL_UNSPECIFIED:
		switch {
		case strings.Contains(raw, "@"):
			return parseEmail(raw, v)
		case strings.HasPrefix(raw, "+"):
			return phone(raw, v)
		}
		v.add("recipient", "must be an E.164 phone number starting with \"+\" or an email address")
		return recipient{}, false
	case otpv1.Channel_CHANNEL_SMS:
		return phone(raw, v)
	case otpv1.Channel_CHANNEL_EMAIL:
		return parseEmail(raw, v)
	}
	v.add("channel", "must be CHANNEL_SMS, CHANNEL_EMAIL or CHANNEL_UNSPECIFIED")
	return recipient{}, false
}

func parsePhone(raw string, v *violations) (recipient, bool) {
	if !strings.HasPrefix(raw, "+") {
		v.add("recipient", "must be a phone number in E.164 form, starting with \"+\" and the country code")
		return recipient{}, false
	}
	// Digits and the usual separators only: the numbering-plan library
	// would otherwise read letters as a vanity number.
	for _, r := range raw[1:] {
		if (r < '0' || r > '9') && !strings.ContainsRune(" -.()", r) {
			v.add("recipient", "must contain only digits after \"+\"")
			return recipient{}, false
		}
	}
	if cc, ccLen, ok := splitE164(raw); ok {
		// Plain E.164 (the API's form): raw is the number's E.164 form
		// and raw[1:1+ccLen] its country calling code, as below.
		if !validNSN(cc, raw[1+ccLen:]) {
			v.add("recipient", "is not a valid phone number")
			return recipient{}, false
		}
		return recipient{channel: otp.SMS, addr: raw, country: raw[1 : 1+ccLen]}, true
	}
	num, err := phonenumbers.Parse(raw, "")
	if err != nil || !isValidNumber(num) {
		v.add("recipient", "is not a valid phone number")
		return recipient{}, false
	}
	return recipient{
		channel: otp.SMS,
		addr:    phonenumbers.Format(num, phonenumbers.E164),
		country: strconv.Itoa(int(num.GetCountryCode())),
	}, true
}

// parseClientIP parses client_ip into the address (parseClientAddr) and
// the key the per-IP limits count under (clientKey): the IP itself for
// IPv4, its /64 network for IPv6 (one subscriber commonly holds a whole
// /64). Empty input means no per-IP limit: the zero Addr and "".
func parseClientIP(raw string, v *violations) (addr netip.Addr, key string, ok bool) {
	addr, ok = parseClientAddr(raw, v)
	if !ok || !addr.IsValid() {
		return netip.Addr{}, "", ok
	}
	return addr, clientKey(addr), true
}

// parseClientAddr parses client_ip into the address itself (IPv4-mapped
// addresses unmapped, zones dropped): the zero Addr, and true, when none
// was given; false, with a violation, when it is not an address.
func parseClientAddr(raw string, v *violations) (netip.Addr, bool) {
	if raw == "" {
		return netip.Addr{}, true
	}
	if len(raw) > maxClientIPLen {
		v.add("client_ip", "must be at most "+strconv.Itoa(maxClientIPLen)+" bytes")
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(raw)
	if err != nil {
		v.add("client_ip", "is not an IP address")
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// clientKey is what the limits count of a client address: an IPv4 address,
// or an IPv6 address's /64.
func clientKey(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// clientNet is what logs show of a client IP: its /24 (IPv4) or /64 (IPv6)
// network, enough to see an attack's source without logging a person's
// address. key is clientKey(ip), which for IPv6 is that network already.
func clientNet(ip netip.Addr, key string) string {
	if !ip.Is4() {
		return key
	}
	// netip.Prefix.String's text, "a.b.c.0/24", in one allocation
	// instead of its two.
	a := ip.As4()
	b := make([]byte, 0, len("255.255.255.0/24"))
	b = strconv.AppendUint(b, uint64(a[0]), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(a[1]), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(a[2]), 10)
	return string(append(b, ".0/24"...))
}

func usageKey(u otpv1.UsageType) (otp.UsageType, string, bool) {
	switch u {
	case otpv1.UsageType_USAGE_TYPE_REGISTER:
		return otp.Register, "register", true
	case otpv1.UsageType_USAGE_TYPE_SIGN_IN:
		return otp.SignIn, "sign_in", true
	case otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD:
		return otp.ForgotPassword, "forgot_password", true
	case otpv1.UsageType_USAGE_TYPE_GENERIC:
		return otp.Generic, "generic", true
	case otpv1.UsageType_USAGE_TYPE_USER_PERMISSION_VALIDATION:
		return otp.UserPermissionValidation, "user_permission_validation", true
	case otpv1.UsageType_USAGE_TYPE_BIND_NEW_IDENTIFIER:
		return otp.BindNewIdentifier, "bind_new_identifier", true
	case otpv1.UsageType_USAGE_TYPE_MFA_VERIFICATION:
		return otp.MfaVerification, "mfa_verification", true
	case otpv1.UsageType_USAGE_TYPE_BIND_MFA:
		return otp.BindMfa, "bind_mfa", true
	case otpv1.UsageType_USAGE_TYPE_ORGANIZATION_INVITATION:
		return otp.OrganizationInvitation, "organization_invitation", true
	}
	return "", "", false
}

func channelProto(c otp.Channel) otpv1.Channel {
	if c == otp.Email {
		return otpv1.Channel_CHANNEL_EMAIL
	}
	return otpv1.Channel_CHANNEL_SMS
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

func parseUsage(u otpv1.UsageType, v *violations) (otp.UsageType, string) {
	usage, key, ok := usageKey(u)
	if !ok {
		v.add("usage_type", "must be set to a known usage type such as USAGE_TYPE_SIGN_IN or USAGE_TYPE_GENERIC")
	}
	return usage, key
}
