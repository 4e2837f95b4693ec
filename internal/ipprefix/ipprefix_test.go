package ipprefix

import (
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, want string // want "" for an error
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{" 203.0.113.0/24 ", "203.0.113.0/24"},
		{"203.0.113.7", "203.0.113.7/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"::ffff:203.0.113.7", "203.0.113.7/32"},
		{"fe80::1%eth0", "fe80::1/128"},
		{"::ffff:10.0.0.0/104", ""},
		{"10.0.0.0/33", ""},
		{"10.0.0", ""},
		{"", ""},
		{"example.com", ""},
	} {
		got, err := Parse(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}
