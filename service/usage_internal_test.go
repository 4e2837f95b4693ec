package service

import (
	"slices"
	"strings"
	"testing"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// TestUsageKeys checks that every usage type of the API maps to one of
// otp.UsageTypes (or to otp.OrganizationInvitation, the link that is no
// code) and to its own key (the Redis key part and the metrics label: the
// enum name in lower case), and that every otp.UsageType is reachable from
// the API, so templates, providers and limits agree on the set.
func TestUsageKeys(t *testing.T) {
	t.Parallel()
	seen := map[otp.UsageType]bool{}
	keys := map[string]bool{}
	for n, name := range otpv1.UsageType_name {
		u, key, ok := usageKey(otpv1.UsageType(n))
		if n == 0 {
			if ok {
				t.Errorf("%s is accepted", name)
			}
			continue
		}
		want := strings.ToLower(strings.TrimPrefix(name, "USAGE_TYPE_"))
		known := slices.Contains(otp.UsageTypes, u) || u == otp.OrganizationInvitation
		if !ok || key != want || !known || seen[u] || keys[key] {
			t.Errorf("usageKey(%s) = %q, %q, %v; want a usage type of its own and key %q", name, u, key, ok, want)
		}
		seen[u], keys[key] = true, true
	}
	if len(seen) != len(otp.UsageTypes)+1 {
		t.Errorf("the API has %d usage types, otp.UsageTypes %d and OrganizationInvitation", len(seen), len(otp.UsageTypes))
	}
}
