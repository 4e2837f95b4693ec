//go:build otpd_fake

package registry

import (
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/fake"
)

// testTypes adds the fake provider, which delivers nothing, to test and
// load-test binaries (go build -tags otpd_fake). A release binary refuses
// "type: fake", so no production configuration can drop codes silently.
func testTypes() map[string]factory {
	return map[string]factory{"fake": vendor(fake.ParseConfig, fake.New, otp.SMS, otp.Email)}
}
