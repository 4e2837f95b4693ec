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
