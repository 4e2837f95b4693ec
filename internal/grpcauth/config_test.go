package grpcauth

import (
	"strings"
	"testing"
)

func TestConfigErrorsNameKeys(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
	if err := (TLSConfig{}).Validate(); err != nil {
		t.Errorf("an empty tls block (plaintext): %v", err)
	}

	tlsErr := TLSConfig{KeyFile: "/x.key", ClientCAFile: "/ca.crt"}.Validate()
	authErr := Config{Tokens: []Token{
		{Name: "", SHA256: sha256Hex("a")},
		{Name: "auth server", SHA256: sha256Hex("b")},
		{Name: "app", SHA256: "the-token-itself"},
		{Name: "app", SHA256: strings.ToUpper(sha256Hex("a"))},
	}}.Validate()
	if tlsErr == nil || authErr == nil {
		t.Fatalf("Validate = %v, %v; want errors", tlsErr, authErr)
	}
	// Keys are relative to the block: the configuration puts them under
	// tls. and auth.
	for err, wants := range map[error][]string{
		tlsErr: {"cert_file: must be set"},
		authErr: {
			"tokens[0].name: must be set", "tokens[1].name: must be printable ASCII without blanks",
			"tokens[2].sha256: must be the 64 hex digits", `tokens[3].name: "app" is tokens[2]'s name too`,
			"tokens[3].sha256: is tokens[0]'s token too",
		},
	} {
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(wants) {
			t.Errorf("got %d errors, want %d:\n%v", len(lines), len(wants), err)
		}
		for _, want := range wants {
			found := false
			for _, l := range lines {
				found = found || strings.HasPrefix(l, want)
			}
			if !found {
				t.Errorf("no error starts with %q:\n%v", want, err)
			}
		}
	}
	if strings.Contains(authErr.Error(), "the-token-itself") {
		t.Errorf("error quotes a token: %v", authErr)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	tokens := []Token{{Name: "auth-server", SHA256: sha256Hex("a")}, {Name: "admin-cli", SHA256: sha256Hex("b")}}
	tlsOn := TLSConfig{CertFile: "/tls.crt", KeyFile: "/tls.key"}
	mtls := TLSConfig{CertFile: "/tls.crt", KeyFile: "/tls.key", ClientCAFile: "/ca.crt"}
	for _, tc := range []struct {
		name string
		tls  TLSConfig
		auth Config
		want string
	}{
		{"plaintext", TLSConfig{}, DefaultConfig(), "plaintext, no bearer tokens"},
		{"TLS", tlsOn, DefaultConfig(), "TLS, no bearer tokens"},
		{"mTLS", mtls, DefaultConfig(), "TLS with client certificates (mTLS), no bearer tokens"},
		{"tokens, health open", tlsOn, Config{Tokens: tokens, OpenHealth: true},
			"TLS, bearer tokens for auth-server, admin-cli (open without a token: health)"},
		{"tokens, health and reflection open", mtls, Config{Tokens: tokens, OpenHealth: true, OpenReflection: true},
			"TLS with client certificates (mTLS), bearer tokens for auth-server, admin-cli (open without a token: health, reflection)"},
		{"tokens, nothing open", TLSConfig{}, Config{Tokens: tokens[:1]}, "plaintext, bearer tokens for auth-server"},
	} {
		if got := Describe(tc.tls, tc.auth); got != tc.want {
			t.Errorf("%s: Describe = %q, want %q", tc.name, got, tc.want)
		}
	}
}
