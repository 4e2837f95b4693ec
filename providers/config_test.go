package providers_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
)

func TestDecodeConfig(t *testing.T) {
	t.Parallel()
	type item struct {
		Name string `json:"name"`
	}
	type cfg struct {
		A     string          `json:"a"`
		B     int             `json:"b"`
		Items []item          `json:"items"`
		ByKey map[string]item `json:"byKey"`
	}
	for _, tc := range []struct {
		name, raw string
		want      cfg
		wantErr   string
	}{
		{name: "object", raw: `{"a":"x","b":2}`, want: cfg{A: "x", B: 2}},
		{name: "empty", raw: "  ", want: cfg{A: "keep"}},
		{name: "null", raw: "null", want: cfg{A: "keep"}},
		{name: "unknown key", raw: `{"a":"x","c":1}`, wantErr: `decode demo config: json: unknown field "c"`},
		{name: "wrong type", raw: `{"b":"two"}`, wantErr: "decode demo config"},
		{name: "trailing data", raw: `{"a":"x"} {}`, wantErr: "unexpected data after the object"},
		{name: "key in the wrong case", raw: `{"A":"x"}`, wantErr: `decode demo config: A: unknown key, did you mean "a"?`},
		{name: "nested key in the wrong case", raw: `{"items":[{"name":"x"},{"Name":"y"}]}`, wantErr: `items[1].Name: unknown key, did you mean "name"?`},
		{name: "map value key in the wrong case", raw: `{"byKey":{"k":{"NAME":"y"}}}`, wantErr: `byKey.k.NAME: unknown key, did you mean "name"?`},
		{name: "nested object", raw: `{"items":[{"name":"x"}],"byKey":{"k":{"name":"y"}}}`, want: cfg{A: "keep", Items: []item{{Name: "x"}}, ByKey: map[string]item{"k": {Name: "y"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := cfg{A: "keep"}
			err := providers.DecodeConfig("demo", []byte(tc.raw), &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseLogtoUsageType(t *testing.T) {
	t.Parallel()
	for _, u := range otp.UsageTypes {
		got, err := providers.ParseLogtoUsageType(string(u))
		if got != u || err != nil {
			t.Errorf("%s: got %q %v", u, got, err)
		}
	}
	// Logto's nine template types, the invitation (a link, no code)
	// included.
	for _, s := range []string{"Register", "SignIn", "ForgotPassword", "Generic",
		"UserPermissionValidation", "BindNewIdentifier", "MfaVerification", "BindMfa", "OrganizationInvitation"} {
		if got, err := providers.ParseLogtoUsageType(s); string(got) != s || err != nil {
			t.Errorf("%s: got %q %v", s, got, err)
		}
	}
	for _, s := range []string{"", "signin", "Continue", "Generic ", "organizationInvitation"} {
		if _, err := providers.ParseLogtoUsageType(s); err == nil || !strings.Contains(err.Error(), "must be one of Register, SignIn") ||
			!strings.Contains(err.Error(), "OrganizationInvitation") {
			t.Errorf("%q: got %v, want an error listing the usage types", s, err)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want, wantErr string }{
		{in: "", want: "<nil>"},
		{in: "https://api.eu.mailgun.net", want: "https://api.eu.mailgun.net"},
		{in: "https://proxy.internal:8443/twilio/", want: "https://proxy.internal:8443/twilio"},
		{in: "http://127.0.0.1:9000", want: "http://127.0.0.1:9000"},
		{in: "api.mailgun.net", wantErr: "scheme must be http or https"},
		{in: "ftp://x", wantErr: "scheme must be http or https"},
		{in: "https://", wantErr: "has no host"},
		{in: "https://user:pass@x", wantErr: "must not hold user info"},
		{in: "https://x/?a=1", wantErr: "must not have a query"},
		{in: "https://x/#f", wantErr: "must not have a query or fragment"},
		{in: "https://x\x7f", wantErr: "not a URL"},
	} {
		u, err := providers.ParseEndpoint(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: got %v, want an error with %q", tc.in, err, tc.wantErr)
			}
			if strings.Contains(tc.in, "pass") && err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("%q: error %q leaks the password", tc.in, err)
			}
			continue
		}
		got := "<nil>"
		if u != nil {
			got = u.String()
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestPickTemplate(t *testing.T) {
	t.Parallel()
	own := map[otp.UsageType]string{otp.SignIn: "sign-in", otp.Generic: "generic"}
	for u, want := range map[otp.UsageType]string{otp.SignIn: "sign-in", otp.Register: "generic", otp.Generic: "generic"} {
		if got, ok := providers.PickTemplate(own, u); !ok || got != want {
			t.Errorf("%s: got %q %v, want %q", u, got, ok, want)
		}
	}
	if got, ok := providers.PickTemplate(map[otp.UsageType]string{otp.SignIn: "x"}, otp.Register); ok {
		t.Errorf("no Generic: got %q, want none", got)
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	msg := otp.Message{To: "+14155550123", Code: "482915"}
	got := providers.Scrub("The 'To' number +14155550123 (14155550123) is bad; code 482915; key sk-live-1\n next", msg, "sk-live-1")
	want := "The 'To' number +14******123 (+14******123) is bad; code <code>; key <redacted>  next"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	email := otp.Message{To: "jane@example.com", Code: "1234"}
	if got := providers.Scrub("'jane@example.com' is not valid", email); got != "'j***@example.com' is not valid" {
		t.Errorf("email: got %q", got)
	}
	// The link whole, though it holds the recipient.
	invite := otp.Message{To: "jane@example.com", Link: "https://auth.example.com/i?email=jane@example.com&token=t0k3n"}
	if got := providers.Scrub("bad link "+invite.Link+" for jane@example.com", invite); got != "bad link <link> for j***@example.com" {
		t.Errorf("invitation: got %q", got)
	}
	long := providers.Scrub(strings.Repeat("é", 300), otp.Message{})
	if len(long) > 204 || !strings.HasSuffix(long, "…") || !strings.HasPrefix(long, "éé") {
		t.Errorf("long text: got %d bytes %q…", len(long), long[:10])
	}
}

func TestDeadlineClient(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	t.Run("timeout is what is left", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		c, err := providers.DeadlineClient(ctx, http.DefaultTransport)
		if err != nil {
			t.Fatal(err)
		}
		if c.Timeout <= 59*time.Minute || c.Timeout > time.Hour {
			t.Errorf("Timeout = %s, want just under an hour", c.Timeout)
		}
	})
	t.Run("no deadline, no timeout", func(t *testing.T) {
		c, err := providers.DeadlineClient(context.Background(), http.DefaultTransport)
		if err != nil || c.Timeout != 0 {
			t.Errorf("got %v, %v; want no timeout", c, err)
		}
	})
	t.Run("ended context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := providers.DeadlineClient(ctx, http.DefaultTransport); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
	t.Run("cancel aborts a request made without the context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		c, err := providers.DeadlineClient(ctx, http.DefaultTransport)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		// http.Get-style: the SDK builds the request with no context.
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatal("request succeeded, want it cancelled")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
	t.Run("deadline aborts a request made without the context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		c, err := providers.DeadlineClient(ctx, http.DefaultTransport)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatal("request succeeded, want a timeout")
		}
		if e := providers.ClassifyTransport("p", err); e.Reason != "timeout" || !e.Retryable {
			t.Errorf("classified %v, want transient timeout", e)
		}
	})
}

func TestNewTransportKeepsConnectionsWarm(t *testing.T) {
	t.Parallel()
	tr := providers.NewTransport()
	if tr.MaxIdleConnsPerHost < 16 || tr.Proxy == nil || tr.TLSHandshakeTimeout == 0 {
		t.Errorf("transport %+v: want pooled connections, proxy from the environment and a TLS handshake timeout", tr)
	}
	if tr == http.DefaultTransport {
		t.Error("NewTransport returned the shared default transport")
	}
}

func TestPreviewHTML(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"<h1>Welcome</h1><p>Your code is <b>123456</b>.</p>", 100, "Welcome Your code is 123456."},
		{"<p>Tom &amp; Jerry&#39;s\n\n  code</p>", 100, "Tom & Jerry's code"},
		{"<p>Votre code est 123456 — à bientôt</p>", 20, "Votre code est 12345…"},
		{"é<b>é</b>é", 3, "é…"},
		{"a<br/>b<BR>c<", 10, "a b c"},
	} {
		if got := providers.PreviewHTML(tc.in, tc.max); got != tc.want {
			t.Errorf("PreviewHTML(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestCheckUsageType(t *testing.T) {
	t.Parallel()
	for _, u := range append(slices.Clone(otp.UsageTypes), otp.OrganizationInvitation) {
		if err := providers.CheckUsageType(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []otp.UsageType{"", "organizationInvitation", "signin"} {
		if err := providers.CheckUsageType(u); err == nil {
			t.Errorf("%q: got nil, want an error", u)
		}
	}
}
