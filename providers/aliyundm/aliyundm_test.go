package aliyundm_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/aliyundm"
	"github.com/otpd/otpd/providers/providertest"
)

// TestSendWire checks every parameter of the SingleSendMail call, the
// signature (recomputed without the SDK) and the receipt.
func TestSendWire(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   func(*aliyundm.Config)
		usage otp.UsageType
		want  map[string]string
	}{
		{
			name: "default region, sender name, own Generic template",
			cfg: func(c *aliyundm.Config) {
				c.FromAlias = "Acme Sign-in"
				c.Templates = []aliyundm.Template{{UsageType: "Generic", Subject: "{{app_name}} code: {{code}}",
					Content: `<p>Hello, your {{app_name}} code is <b>{{code}}</b>, valid {{ttl_minutes}} minutes.</p>`}}
			},
			usage: otp.SignIn,
			want: map[string]string{
				"RegionId":  "cn-hangzhou",
				"FromAlias": "Acme Sign-in",
				"Subject":   "Acme code: 482915",
				"HtmlBody":  "<p>Hello, your Acme code is <b>482915</b>, valid 10 minutes.</p>",
			},
		},
		{
			name:  "other region, no sender name, otpd's templates",
			cfg:   func(c *aliyundm.Config) { c.RegionID = "eu-central-1" },
			usage: otp.Register,
			want: map[string]string{
				"RegionId":  "eu-central-1",
				"FromAlias": "",
				"Subject":   "Your Acme code: 482915",
				"HtmlBody":  "<p>Your Acme code is <b>482915</b>.</p>",
				"TextBody":  "",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := providertest.NewServer(t, ok)
			cfg := baseConfig()
			tc.cfg(&cfg)
			p := newProvider(t, srv, cfg)

			rc, err := p.Send(providertest.Deadline(t, 5*time.Second), sampleMail(tc.usage))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if rc != (otp.Receipt{Provider: provider, MessageID: envID}) {
				t.Errorf("receipt = %+v, want MessageID %s (EnvId)", rc, envID)
			}
			wantRequests(t, srv, 1)
			r := srv.Last(t)
			if r.Method != http.MethodPost || r.Path != "/" {
				t.Errorf("request = %s %s, want POST /", r.Method, r.Path)
			}
			want := map[string]string{
				"Action":           "SingleSendMail",
				"Version":          "2015-11-23",
				"Format":           "JSON",
				"AccessKeyId":      keyID,
				"SignatureMethod":  "HMAC-SHA1",
				"SignatureVersion": "1.0",
				"AccountName":      accountName,
				"AddressType":      "1",
				"ReplyToAddress":   "false",
				"ToAddress":        recipient,
			}
			for k, v := range tc.want {
				want[k] = v
			}
			wantParams(t, r, want)
			// The SDK puts every parameter, the mail included, in the query
			// string, as Aliyun's own SDKs do.
			for _, k := range []string{"ToAddress", "Subject", "HtmlBody", "AccessKeyId", "Signature"} {
				if !r.Query.Has(k) {
					t.Errorf("%s is not in the query string", k)
				}
			}
			if r.Query.Get("SignatureNonce") == "" {
				t.Error("SignatureNonce is empty")
			}
			if ts, err := time.Parse("2006-01-02T15:04:05Z", r.Query.Get("Timestamp")); err != nil || time.Since(ts).Abs() > time.Hour {
				t.Errorf("Timestamp = %q, want the current UTC time in ISO 8601", r.Query.Get("Timestamp"))
			}
			if !strings.Contains(r.Query.Get("HtmlBody"), providertest.Code) {
				t.Error("HtmlBody lacks the code")
			}
			checkSignature(t, r)
		})
	}
}

// TestSendReceiptFallsBackToRequestID checks the receipt of an answer
// without EnvId.
func TestSendReceiptFallsBackToRequestID(t *testing.T) {
	t.Parallel()
	srv := providertest.NewServer(t, func(providertest.Request) providertest.Response {
		return providertest.Response{Body: `{"RequestId":"` + requestID + `"}`}
	})
	rc, err := newProvider(t, srv, baseConfig()).Send(t.Context(), sampleMail(otp.SignIn))
	if err != nil || rc.MessageID != requestID {
		t.Errorf("Send = %+v, %v; want MessageID %s (RequestId)", rc, err, requestID)
	}
}

// TestSendTemplateChoice checks which subject and body go out: the usage
// type's own template, else Generic, else otpd's rendering.
func TestSendTemplateChoice(t *testing.T) {
	t.Parallel()
	own := []aliyundm.Template{
		{UsageType: "SignIn", Subject: "Sign in to {{app_name}}: {{code}}", Content: "<p>{{app_name}} sign-in code <b>{{code}}</b></p>"},
		{UsageType: "Generic", Subject: "{{code}} is your {{app_name}} code", Content: "<p>{{app_name}}: {{code}}</p>"},
		{UsageType: "MfaVerification", Subject: "MFA code {{code}}", Content: "<p>Your MFA code is {{code}}</p>"},
		{UsageType: "OrganizationInvitation", Subject: "Join {{app_name}}", Content: "<p><a href='{{link}}'>Join</a></p>"},
	}
	// Logto's default invitation template has a code, which an invitation
	// has not: it is ignored, and neither is Generic used.
	logtoDefault := []aliyundm.Template{
		{UsageType: "Generic", Subject: "{{code}} is your {{app_name}} code", Content: "<p>{{app_name}}: {{code}}</p>"},
		{UsageType: "OrganizationInvitation", Subject: "Invitation", Content: "Your Logto organization invitation code is {{code}}."},
	}
	invitation := providertest.Invitation(otp.Email, recipient)
	onlyRegister := []aliyundm.Template{{UsageType: "Register", Subject: "Welcome {{code}}", Content: "<p>{{code}}</p>"}}
	withApp := func(u otp.UsageType, app string) otp.Message {
		m := sampleMail(u)
		m.AppName = app
		return m
	}
	textOnly := sampleMail(otp.Generic)
	textOnly.Content.HTML = ""

	for _, tc := range []struct {
		name      string
		templates []aliyundm.Template
		msg       otp.Message
		want      map[string]string
	}{
		{
			name: "own template", templates: own, msg: sampleMail(otp.SignIn),
			want: map[string]string{"Subject": "Sign in to Acme: 482915", "HtmlBody": "<p>Acme sign-in code <b>482915</b></p>"},
		},
		{
			name: "own template of a Logto usage type", templates: own, msg: sampleMail(otp.MfaVerification),
			want: map[string]string{"Subject": "MFA code 482915", "HtmlBody": "<p>Your MFA code is 482915</p>"},
		},
		{
			name: "Generic for a Logto usage type without one", templates: own, msg: sampleMail(otp.BindMfa),
			want: map[string]string{"Subject": "482915 is your Acme code", "HtmlBody": "<p>Acme: 482915</p>"},
		},
		{
			name: "Generic for a usage type without one", templates: own, msg: sampleMail(otp.ForgotPassword),
			want: map[string]string{"Subject": "482915 is your Acme code", "HtmlBody": "<p>Acme: 482915</p>"},
		},
		{
			name: "otpd's rendering without own or Generic", templates: onlyRegister, msg: sampleMail(otp.SignIn),
			want: map[string]string{"Subject": "Your Acme code: 482915", "HtmlBody": "<p>Your Acme code is <b>482915</b>.</p>"},
		},
		{
			name: "values escaped in HTML only", templates: own, msg: withApp(otp.SignIn, `Tom & "Jerry" <Co>`),
			want: map[string]string{
				"Subject":  `Sign in to Tom & "Jerry" <Co>: 482915`,
				"HtmlBody": "<p>Tom &amp; &#34;Jerry&#34; &lt;Co&gt; sign-in code <b>482915</b></p>",
			},
		},
		{
			name: "own invitation template", templates: own, msg: invitation,
			want: map[string]string{"Subject": "Join Acme", "HtmlBody": "<p><a href='https://auth.example.com/invitation?token=t0k3n-s3cr3t&amp;org=acme'>Join</a></p>"},
		},
		{
			name: "otpd's invitation when the own one cannot carry the link, never Generic", templates: logtoDefault, msg: invitation,
			want: map[string]string{"Subject": "Join Acme", "HtmlBody": invitation.Content.HTML},
		},
		{
			name: "otpd's text when it rendered no HTML", msg: textOnly,
			want: map[string]string{"Subject": "Your Acme code: 482915", "TextBody": "Your Acme code is 482915.", "HtmlBody": ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := providertest.NewServer(t, ok)
			cfg := baseConfig()
			cfg.Templates = tc.templates
			if _, err := newProvider(t, srv, cfg).Send(t.Context(), tc.msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			r := srv.Last(t)
			wantParams(t, r, tc.want)
			checkSignature(t, r)
		})
	}
}

// TestSendErrors checks how each kind of DirectMail answer is classified,
// that the SDK never retries, and that no error text holds a credential,
// the code or the recipient.
func TestSendErrors(t *testing.T) {
	t.Parallel()
	aliyunError := func(status int, code, message string) func(providertest.Request) providertest.Response {
		body, _ := json.Marshal(map[string]string{"Code": code, "Message": message, "RequestId": requestID, "HostId": "dm.aliyuncs.com"})
		return func(providertest.Request) providertest.Response {
			return providertest.Response{Status: status, Body: string(body)}
		}
	}
	raw := func(status int, contentType, body string) func(providertest.Request) providertest.Response {
		return func(providertest.Request) providertest.Response {
			return providertest.Response{Status: status, Header: map[string]string{"Content-Type": contentType}, Body: body}
		}
	}
	// signatureMismatch answers as DirectMail does to a bad secret: with
	// the string to sign, which holds every parameter.
	signatureMismatch := func(r providertest.Request) providertest.Response {
		body, _ := json.Marshal(map[string]string{"Code": "SignatureDoesNotMatch", "RequestId": requestID,
			"Message": "Specified signature is not matched with our calculation. server string to sign is:" + stringToSign(t, r)})
		return providertest.Response{Status: 400, Body: string(body)}
	}
	for _, tc := range []struct {
		name      string
		respond   func(providertest.Request) providertest.Response
		reason    string
		retryable bool
	}{
		{"bad recipient", aliyunError(400, "InvalidToAddress", "The ToAddress "+recipient+" is invalid."), "InvalidToAddress", false},
		{"suppressed recipient", aliyunError(400, "InvalidToAddress.Spam", "spam"), "InvalidToAddress.Spam", false},
		{"unknown key", aliyunError(404, "InvalidAccessKeyId.NotFound", "Specified access key "+keyID+" is not found."), "InvalidAccessKeyId.NotFound", false},
		{"bad secret", signatureMismatch, "SignatureDoesNotMatch", false},
		{"disabled secret", aliyunError(400, "InvalidAccessKeySecret", "bad secret"), "InvalidAccessKeySecret", false},
		{"RAM policy", aliyunError(403, "Forbidden.RAM", "User not authorized to operate on the specified resource."), "Forbidden.RAM", false},
		{"sender not set up", aliyunError(404, "InvalidMailAddress.NotFound", "The specified mail address is not found."), "InvalidMailAddress.NotFound", false},
		{"mail refused", aliyunError(400, "InvalidSendMail.Spam", "spam"), "InvalidSendMail.Spam", false},
		{"other 4xx code", aliyunError(400, "InvalidSubject.Malformed", "The specified subject is malformed."), "InvalidSubject.Malformed", false},
		{"throttled with 400", aliyunError(400, "Throttling.User", "Request was denied due to user flow control."), "Throttling.User", true},
		{"throttled with 503", aliyunError(503, "Throttling", "Request was denied due to flow control."), "Throttling", true},
		{"internal error", aliyunError(500, "InternalError", "The request processing has failed due to some unknown error."), "InternalError", true},
		{"unavailable", aliyunError(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."), "ServiceUnavailable", true},
		{"other 5xx code", aliyunError(502, "UnknownError", "bad"), "UnknownError", true},
		{"non-JSON 502", raw(502, "text/html", "<html><body>502 Bad Gateway "+recipient+"</body></html>"), "http_502", true},
		{"non-JSON 429", raw(429, "text/plain", "slow down"), "throttled", true},
		{"non-JSON 404", raw(404, "text/html", "<h1>Not Found</h1>"), "http_404", false},
		{"success without ids", raw(200, "application/json", `{}`), "bad_response", true},
		{"success not JSON", raw(200, "text/html", "<html>ok</html>"), "bad_response", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := providertest.NewServer(t, tc.respond)
			msg := sampleMail(otp.SignIn)
			_, err := newProvider(t, srv, baseConfig()).Send(providertest.Deadline(t, 5*time.Second), msg)
			providertest.WantError(t, err, provider, tc.reason, tc.retryable, leaks(msg)...)
			providertest.NoLeak(t, err.Error(), srv.Last(t).Query.Get("Signature"))
			wantRequests(t, srv, 1)
		})
	}
}

// TestSendVendorMessageQuoted checks that DirectMail's message reaches the
// error, scrubbed.
func TestSendVendorMessageQuoted(t *testing.T) {
	t.Parallel()
	srv := providertest.NewServer(t, func(providertest.Request) providertest.Response {
		return providertest.Response{Status: 400, Body: `{"Code":"InvalidToAddress","Message":"The ToAddress ` + recipient +
			` is invalid.","RequestId":"` + requestID + `"}`}
	})
	_, err := newProvider(t, srv, baseConfig()).Send(t.Context(), sampleMail(otp.SignIn))
	want := "The ToAddress j***@example.com is invalid. (request " + requestID + ")"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to quote %q", err, want)
	}
}

// TestSendTransportErrors checks failures to get an answer: transient, and
// free of the request URL's query string.
func TestSendTransportErrors(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		srv := providertest.NewServer(t, ok)
		p := newProvider(t, srv, baseConfig())
		srv.Close()
		msg := sampleMail(otp.SignIn)
		_, err := p.Send(providertest.Deadline(t, 5*time.Second), msg)
		providertest.WantError(t, err, provider, "transport", true, leaks(msg)...)
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		srv := providertest.NewServer(t, func(providertest.Request) providertest.Response {
			return providertest.Response{Body: okBody, Delay: time.Minute}
		})
		msg := sampleMail(otp.SignIn)
		start := time.Now()
		_, err := newProvider(t, srv, baseConfig()).Send(providertest.Deadline(t, 300*time.Millisecond), msg)
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("Send returned after %s, want soon after its 300ms deadline", elapsed)
		}
		providertest.WantError(t, err, provider, "timeout", true, leaks(msg)...)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
		}
		wantRequests(t, srv, 1)
	})
	t.Run("canceled before sending", func(t *testing.T) {
		t.Parallel()
		srv := providertest.NewServer(t, ok)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := newProvider(t, srv, baseConfig()).Send(ctx, sampleMail(otp.SignIn))
		providertest.WantError(t, err, provider, "canceled", true)
		wantRequests(t, srv, 0)
	})
}

// TestSendRejects checks messages the provider refuses without a request.
func TestSendRejects(t *testing.T) {
	t.Parallel()
	sms := providertest.Message(otp.SMS, "+14155550123", otp.SignIn)
	list := sampleMail(otp.SignIn)
	list.To = `"a,b"@example.com`
	bare := sampleMail(otp.SignIn)
	bare.Content = otp.Content{}
	for _, tc := range []struct {
		name   string
		msg    otp.Message
		reason string
	}{
		{"sms", sms, "unsupported_channel"},
		{"recipient list", list, "invalid_recipient"},
		{"nothing to send", bare, "no_template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := providertest.NewServer(t, ok)
			p := newProvider(t, srv, baseConfig())
			_, err := p.Send(t.Context(), tc.msg)
			providertest.WantError(t, err, provider, tc.reason, false, leaks(tc.msg)...)
			if _, err := p.Preview(tc.msg); err == nil {
				t.Error("Preview accepted a message Send refuses")
			}
			wantRequests(t, srv, 0)
		})
	}
}

// TestSendConcurrent runs sends in parallel through one provider (the race
// detector watches the SDK's per-call state) and checks each is signed on
// its own.
func TestSendConcurrent(t *testing.T) {
	t.Parallel()
	srv := providertest.NewServer(t, ok)
	p := newProvider(t, srv, baseConfig())
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := p.Send(providertest.Deadline(t, 5*time.Second), sampleMail(otp.Generic)); err != nil {
				t.Errorf("Send: %v", err)
			}
		})
	}
	wg.Wait()
	nonces := make(map[string]bool)
	for _, r := range srv.Requests() {
		nonces[r.Query.Get("SignatureNonce")] = true
		checkSignature(t, r)
	}
	if len(nonces) != n {
		t.Errorf("%d distinct nonces in %d requests, want %d", len(nonces), len(srv.Requests()), n)
	}
}

// TestSendHTTPS checks that an https endpoint is called over TLS, as the
// production default is.
func TestSendHTTPS(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got []providertest.Request
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, providertest.Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body})
		mu.Unlock()
		if r.TLS == nil {
			http.Error(w, "not TLS", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, okBody)
	}))
	t.Cleanup(srv.Close)

	cfg := baseConfig()
	cfg.Endpoint = srv.URL
	p, err := aliyundm.New(provider, cfg)
	if err != nil {
		t.Fatal(err)
	}
	aliyundm.Transport(p).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	if _, err := p.Send(providertest.Deadline(t, 5*time.Second), sampleMail(otp.SignIn)); err != nil {
		t.Fatalf("Send over https: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("the TLS server received %d requests, want 1", len(got))
	}
	checkSignature(t, got[0])
}
