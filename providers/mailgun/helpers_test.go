package mailgun_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/mailgun"
	"github.com/otpd/otpd/providers/providertest"
)

const (
	apiKey    = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
	domain    = "mg.example.com"
	from      = "Acme <no-reply@mg.example.com>"
	to        = "jane.doe@example.com"
	messageID = "<20261121.1@mg.example.com>"
	wantPath  = "/v3/" + domain + "/messages"
)

// seedDeliveries is the deliveries example of Logto's Mailgun connector
// guide (seeds 001 and 002), pasted verbatim except for the reply-to
// address: the scraped guide shows Cloudflare's "[email protected]" in its
// place, and Logto's README has "foo@bar.com".
const seedDeliveries = `{
"Register": {
"subject": "{{code}} est votre code de vérification",
"replyTo": "Foo <foo@bar.com>",
"html": "<h1>Bienvenue sur Logto</h1><p>Votre code de vérification est {{code}}.</p>",
"text": "Bienvenue sur Logto. Votre code de vérification est {{code}}."
},
"SignIn": {
"subject": "Bon retour sur Logto",
"replyTo": "Foo <foo@bar.com>",
"template": "logto-sign-in",
"variables": {
"bar": "baz"
}
}
}`

// logtoConfig returns a full Logto Mailgun connector config with the given
// endpoint and deliveries (JSON).
func logtoConfig(endpoint, deliveries string) string {
	return fmt.Sprintf(`{
  "endpoint": %q,
  "domain": %q,
  "apiKey": %q,
  "from": %q,
  "deliveries": %s
}`, endpoint, domain, apiKey, from, deliveries)
}

// configWith returns the seed config with key set to the raw JSON value v,
// or without key if v is empty.
func configWith(tb testing.TB, key, v string) string {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(logtoConfig("", seedDeliveries)), &m); err != nil {
		tb.Fatal(err)
	}
	if v == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(v)
	}
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return string(out)
}

// newProvider parses raw as ParseConfig would get it from otpd's config
// file and builds a provider called "mailgun".
func newProvider(tb testing.TB, raw string) *mailgun.Provider {
	tb.Helper()
	cfg, err := mailgun.ParseConfig([]byte(raw))
	if err != nil {
		tb.Fatalf("ParseConfig: %v", err)
	}
	p, err := mailgun.New("mailgun", cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return p
}

// accepted answers as Mailgun does when it queues a message.
func accepted(providertest.Request) providertest.Response {
	return providertest.Response{Body: `{"id":"` + messageID + `","message":"Queued. Thank you."}`}
}

// newFake starts a fake Mailgun API that accepts every message.
func newFake(tb testing.TB) *providertest.Server {
	tb.Helper()
	return providertest.NewServer(tb, accepted)
}

// sample is an email to the test recipient, rendered from otpd's templates.
func sample(u otp.UsageType) otp.Message {
	return providertest.Message(otp.Email, to, u)
}

// wantBasicAuth checks, without Go's own parser, that r carries Basic auth
// "api":apiKey.
func wantBasicAuth(tb testing.TB, r providertest.Request) {
	tb.Helper()
	h := r.Header.Get("Authorization")
	enc, ok := strings.CutPrefix(h, "Basic ")
	if !ok {
		tb.Fatalf("Authorization = %q, want Basic", h)
	}
	dec, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		tb.Fatalf("Authorization: %v", err)
	}
	if string(dec) != "api:"+apiKey {
		tb.Errorf("Basic auth = %q, want %q", dec, "api:"+apiKey)
	}
}

// wantForm checks that r's form holds exactly the fields of want, each once.
func wantForm(tb testing.TB, r providertest.Request, want map[string]string) {
	tb.Helper()
	if r.Form == nil {
		tb.Fatalf("body is not a form (Content-Type %q)", r.Header.Get("Content-Type"))
	}
	for _, k := range slices.Sorted(maps.Keys(r.Form)) {
		w, ok := want[k]
		switch got := r.Form[k]; {
		case !ok:
			tb.Errorf("form has unexpected field %s = %q", k, got)
		case len(got) != 1 || got[0] != w:
			tb.Errorf("form %s = %q, want [%q]", k, got, w)
		}
	}
	for k := range want {
		if _, ok := r.Form[k]; !ok {
			tb.Errorf("form lacks %s (want %q)", k, want[k])
		}
	}
}
