package otp_test

import (
	"testing"

	"github.com/otpd/otpd/otp"
)

func TestASCIIDomain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"example.com", "example.com", true},
		{"Example.COM", "example.com", true},
		{"ｅｘａｍｐｌｅ.com", "example.com", true},
		{"exämple.com", "xn--exmple-cua.com", true},
		{"XN--EXMPLE-CUA.COM", "xn--exmple-cua.com", true},
		{"exa\u0308mple.com", "xn--exmple-cua.com", true}, // NFD
		{"faß.de", "xn--fa-hia.de", true},                 // nontransitional
		{"xn--example-.com", "", false},                   // punycode of plain ASCII
		{"aℵb.com", "", false},                            // bidi rule on the mapped form
	} {
		got, ok := otp.ASCIIDomain(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ASCIIDomain(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
