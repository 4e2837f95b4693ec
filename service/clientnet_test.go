package service

import (
	"net/netip"
	"testing"
)

// TestClientNet: what the logs show of a client IP, the network its
// limits count it under widened to a /24 for IPv4.
func TestClientNet(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ raw, want string }{
		{"203.0.113.9", "203.0.113.0/24"},
		{"10.1.2.255", "10.1.2.0/24"},
		{"::ffff:198.51.100.7", "198.51.100.0/24"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		var v violations
		a, ok := parseClientAddr(tt.raw, &v)
		if !ok || !a.IsValid() {
			t.Fatalf("parseClientAddr(%q): %v", tt.raw, v.list)
		}
		if got := clientNet(a, clientKey(a)); got != tt.want {
			t.Errorf("clientNet(%q) = %q, want %q", tt.raw, got, tt.want)
		}
		// The key of an IPv6 client is its network as a prefix.
		if p, err := netip.ParsePrefix(clientKey(a)); err == nil && p.String() != clientNet(a, clientKey(a)) {
			t.Errorf("clientNet(%q) = %q, its key %q", tt.raw, clientNet(a, clientKey(a)), clientKey(a))
		}
	}
}

// TestClientNetIPv4: an IPv4 client's network reads as netip.Prefix
// writes it, for every value of each byte.
func TestClientNetIPv4(t *testing.T) {
	t.Parallel()
	for i := range 256 {
		for _, a := range []netip.Addr{
			netip.AddrFrom4([4]byte{byte(i), 0, 0, 0}),
			netip.AddrFrom4([4]byte{255, byte(i), 255, byte(i)}),
			netip.AddrFrom4([4]byte{1, 2, byte(i), 255}),
			netip.AddrFrom4([4]byte{byte(i), byte(255 - i), byte(i / 2), byte(i)}),
		} {
			p, _ := a.Prefix(24)
			if got := clientNet(a, clientKey(a)); got != p.String() {
				t.Fatalf("clientNet(%s) = %q, want %q", a, got, p.String())
			}
		}
	}
}
