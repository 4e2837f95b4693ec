// Package ipprefix reads the IP lists of otpd's configuration: CIDR
// prefixes and single addresses, as the prefixes client addresses are
// matched against.
package ipprefix

import (
	"errors"
	"net/netip"
	"strings"
)

// Parse reads "10.0.0.0/8", "2001:db8::/32" or a single address
// ("203.0.113.7", "2001:db8::1", "::ffff:203.0.113.7") as a prefix, masked,
// with surrounding spaces ignored. A single address is unmapped and loses
// its zone, as client addresses are before they are matched
// (::ffff:203.0.113.7 is 203.0.113.7/32). An IPv4-mapped prefix is refused:
// it would never match an unmapped client address, so an allow or ignore
// list holding one would silently do nothing.
func Parse(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, errors.New("an IPv4-mapped prefix never matches: write it as IPv4")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}
