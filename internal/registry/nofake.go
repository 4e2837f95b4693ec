//go:build !otpd_fake

package registry

// testTypes adds nothing to a release binary: see fake.go.
func testTypes() map[string]factory { return nil }
