package redisstore

import (
	"strings"
	"testing"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// Every usage type of the API has a tag of one letter of its own in a
// recipient's record: never S, V or T (the record's events), and never
// the {usage} fallback, which costs bytes in every field of the code.
func TestUsageTags(t *testing.T) {
	seen := map[string]string{}
	for n, name := range otpv1.UsageType_name {
		if n == 0 {
			continue // USAGE_TYPE_UNSPECIFIED, refused before the store
		}
		usage := strings.ToLower(strings.TrimPrefix(name, "USAGE_TYPE_"))
		tag := usageTag(usage)
		if len(tag) != 1 || tag[0] < 'a' || tag[0] > 'z' {
			t.Errorf("usage %s has tag %q, want one lower-case letter (add it to usageTags)", usage, tag)
		}
		if other, ok := seen[tag]; ok {
			t.Errorf("usages %s and %s share the tag %q", usage, other, tag)
		}
		seen[tag] = usage
	}
	if got := usageTag("x}y"); got != "{xy}" {
		t.Errorf("usageTag of an unknown usage = %q, want {xy}", got)
	}
}
