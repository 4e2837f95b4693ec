package aliyundm_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/aliyundm"
	"github.com/otpd/otpd/providers/providertest"
)

const (
	provider    = "aliyun"
	keyID       = "LTAI5tTestAccessKeyId001"
	keySecret   = "test-secret-Zk3v9QpL2x"
	accountName = "no-reply@dm.example.com"
	recipient   = "john.doe+otp@example.com"
	envID       = "600000000000"
	requestID   = "0E9F5B2C-1C3A-4B7E-9C1D-2F3A4B5C6D7E"
)

// okBody is DirectMail's answer to a SingleSendMail it accepted.
var okBody = `{"EnvId":"` + envID + `","RequestId":"` + requestID + `"}`

// ok answers as DirectMail does when it accepts a mail.
func ok(providertest.Request) providertest.Response { return providertest.Response{Body: okBody} }

// baseConfig is a valid config without templates, endpoint or region.
func baseConfig() aliyundm.Config {
	return aliyundm.Config{AccessKeyID: keyID, AccessKeySecret: keySecret, AccountName: accountName}
}

// newProvider returns a provider called provider that talks to srv, with
// cfg's other settings.
func newProvider(tb testing.TB, srv *providertest.Server, cfg aliyundm.Config) *aliyundm.Provider {
	tb.Helper()
	if srv != nil {
		cfg.Endpoint = srv.URL
	}
	p, err := aliyundm.New(provider, cfg)
	if err != nil {
		tb.Fatalf("aliyundm.New: %v", err)
	}
	return p
}

// sampleMail returns an email of usage type u to recipient, rendered from
// otpd's templates as the service would.
func sampleMail(u otp.UsageType) otp.Message {
	return providertest.Message(otp.Email, recipient, u)
}

// leaks lists what no error text may hold: the credentials, the code, and
// the recipient plainly or percent-encoded as in a URL or a string to sign.
func leaks(msg otp.Message) []string {
	once := url.QueryEscape(msg.To)
	return []string{keyID, keySecret, msg.Code, msg.To, once, url.QueryEscape(once), "Signature=", "AccessKeyId="}
}

// params returns every parameter of a recorded request, query and form
// body, failing the test if one is given twice.
func params(tb testing.TB, r providertest.Request) map[string]string {
	tb.Helper()
	out := make(map[string]string)
	for _, vs := range []url.Values{r.Query, r.Form} {
		for k, v := range vs {
			if _, dup := out[k]; dup || len(v) != 1 {
				tb.Errorf("parameter %s is given %d times", k, len(v))
			}
			out[k] = v[0]
		}
	}
	return out
}

// percentEncode encodes s as Aliyun's RPC signature wants (RFC 3986): every
// byte but the unreserved characters becomes %XX, a space %20, '*' %2A.
func percentEncode(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// stringToSign computes the string to sign of a recorded request from its
// parameters, as DirectMail does, without the SDK.
func stringToSign(tb testing.TB, r providertest.Request) string {
	tb.Helper()
	ps := params(tb, r)
	keys := make([]string, 0, len(ps))
	for k := range ps {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = percentEncode(k) + "=" + percentEncode(ps[k])
	}
	return r.Method + "&" + percentEncode("/") + "&" + percentEncode(strings.Join(pairs, "&"))
}

// checkSignature fails the test unless r's Signature is the HMAC-SHA1 of
// its string to sign under keySecret + "&".
func checkSignature(tb testing.TB, r providertest.Request) {
	tb.Helper()
	mac := hmac.New(sha1.New, []byte(keySecret+"&"))
	mac.Write([]byte(stringToSign(tb, r)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got := r.Query.Get("Signature"); got != want {
		tb.Errorf("Signature = %q, want %q (recomputed)", got, want)
	}
}

// wantParams fails the test for each parameter of r that differs from want;
// an empty want value means the parameter must be absent.
func wantParams(tb testing.TB, r providertest.Request, want map[string]string) {
	tb.Helper()
	got := params(tb, r)
	for k, w := range want {
		g, present := got[k]
		switch {
		case w == "" && present:
			tb.Errorf("parameter %s = %q, want it absent", k, g)
		case w != "" && g != w:
			tb.Errorf("parameter %s = %q, want %q", k, g, w)
		}
	}
}

// wantRequests fails the test unless srv received n requests: the SDK must
// never retry on its own.
func wantRequests(tb testing.TB, srv *providertest.Server, n int) {
	tb.Helper()
	if got := len(srv.Requests()); got != n {
		tb.Errorf("the fake API received %d requests, want %d", got, n)
	}
}
