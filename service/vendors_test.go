package service_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/aliyundm"
	"github.com/otpd/otpd/providers/mailgun"
	"github.com/otpd/otpd/providers/providertest"
	"github.com/otpd/otpd/providers/tencent"
	"github.com/otpd/otpd/providers/twilio"
)

// vendor is one vendor provider wired into the service against its fake
// API.
type vendor struct {
	api  *providertest.Server
	ok   providertest.Response // what the fake answers when all is well
	code func(providertest.Request) string
}

// respond makes the fake answer every request with r.
func (v *vendor) respond(r providertest.Response) {
	v.api.SetResponder(func(providertest.Request) providertest.Response { return r })
}

func (v *vendor) healthy() { v.respond(v.ok) }

// lastCode returns the code the latest request to the fake carried.
func (v *vendor) lastCode(tb testing.TB) string {
	tb.Helper()
	code := v.code(v.api.Last(tb))
	if code == "" {
		tb.Fatalf("the last request to %s carried no code", v.api.URL)
	}
	return code
}

// vendors is the harness's four providers: Twilio then Tencent for SMS,
// Mailgun then Aliyun DirectMail for email, each against its fake API.
type vendors struct {
	*harness
	twilio, tencent, mailgun, aliyun *vendor
}

var sixDigits = regexp.MustCompile(`\b\d{6}\b`)

func firstCode(s string) string { return sixDigits.FindString(s) }

// newVendors starts the four fake APIs and a service whose routes go
// through the real providers: "primary" is Twilio (SMS) and Mailgun
// (email), "secondary" Tencent (SMS) and Aliyun DirectMail (email).
func newVendors(tb testing.TB) *vendors {
	tb.Helper()
	v := &vendors{
		twilio: &vendor{
			ok:   providertest.Response{Status: 201, Body: `{"sid":"SM0123456789abcdef0123456789abcdef","status":"accepted"}`},
			code: func(r providertest.Request) string { return firstCode(r.Form.Get("Body")) },
		},
		tencent: &vendor{
			ok: providertest.Response{Body: `{"Response":{"SendStatusSet":[{"SerialNo":"2028:f825e6b16e23f73f4123","PhoneNumber":"` + phone +
				`","Fee":1,"SessionContext":"","Code":"Ok","Message":"send success","IsoCode":"US"}],"RequestId":"a0aabda6"}}`},
			code: func(r providertest.Request) string { return firstCode(string(r.Body)) },
		},
		mailgun: &vendor{
			ok:   providertest.Response{Body: `{"id":"<20261121.1@mg.example.com>","message":"Queued. Thank you."}`},
			code: func(r providertest.Request) string { return firstCode(r.Form.Get("text")) },
		},
		aliyun: &vendor{
			ok: providertest.Response{Body: `{"EnvId":"600000000001","RequestId":"2D6C2A1F-0E3F-4B3B-9C1A-7B8F2C1D0E9A"}`},
			code: func(r providertest.Request) string {
				body := r.Query.Get("HtmlBody")
				if body == "" {
					body = r.Form.Get("HtmlBody")
				}
				return firstCode(body)
			},
		},
	}
	for _, x := range []*vendor{v.twilio, v.tencent, v.mailgun, v.aliyun} {
		ok := x.ok
		x.api = providertest.NewServer(tb, func(providertest.Request) providertest.Response { return ok })
	}
	senders := map[string]providers.Sender{
		"sms/primary": build(tb, twilio.ParseConfig, twilio.New, "primary", fmt.Sprintf(`{"accountSID": "AC0123456789abcdef0123456789abcdef",
			"authToken": "0123456789abcdef0123456789abcdef", "fromMessagingServiceSID": "MG0123456789abcdef0123456789abcdef",
			"templates": [{"usageType": "Generic", "content": "Your Acme code is {{code}}"}], "endpoint": %q}`, v.twilio.api.URL)),
		"sms/secondary": build(tb, tencent.ParseConfig, tencent.New, "secondary", fmt.Sprintf(`{"accessKeyId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
			"accessKeySecret": "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY", "signName": "Acme", "region": "ap-guangzhou", "sdkAppId": "1400000000",
			"templates": [{"usageType": "Generic", "templateCode": "1234567"}], "endpoint": %q}`, v.tencent.api.URL)),
		"email/primary": build(tb, mailgun.ParseConfig, mailgun.New, "primary", fmt.Sprintf(`{"endpoint": %q, "domain": "mg.example.com",
			"apiKey": "key-0123456789abcdef", "from": "Acme <no-reply@mg.example.com>"}`, v.mailgun.api.URL)),
		"email/secondary": build(tb, aliyundm.ParseConfig, aliyundm.New, "secondary", fmt.Sprintf(`{"accessKeyId": "LTAI5tExampleAccessKeyId",
			"accessKeySecret": "ExampleAccessKeySecret0123456789", "accountName": "no-reply@dm.example.com", "fromAlias": "Acme",
			"templates": [{"usageType": "Generic", "subject": "Your code", "content": "<p>Your Acme code is <b>{{code}}</b></p>"}], "endpoint": %q}`, v.aliyun.api.URL)),
	}
	v.harness = newHarness(tb, nil, func(routes []providers.Route) {
		for i, r := range routes {
			routes[i].Sender = senders[string(r.Channel)+"/"+r.Name]
		}
	})
	return v
}

// build parses a provider's JSON config as otpd's config loader hands it
// over and builds the provider.
func build[C any, S providers.Sender](tb testing.TB, parse func([]byte) (C, error), newSender func(string, C) (S, error), name, raw string) providers.Sender {
	tb.Helper()
	cfg, err := parse([]byte(raw))
	if err != nil {
		tb.Fatalf("%s: parse config: %v", name, err)
	}
	s, err := newSender(name, cfg)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return s
}

// sendVia sends a code to to and checks that provider delivered it
// through v's fake API; it returns the code found on the wire.
func (vs *vendors) sendVia(tb testing.TB, to string, u otpv1.UsageType, provider string, v *vendor) string {
	tb.Helper()
	before := len(v.api.Requests())
	resp, err := vs.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: to, UsageType: u})
	if err != nil {
		tb.Fatalf("SendCode(%s): %v", to, err)
	}
	if resp.GetProvider() != provider {
		tb.Fatalf("SendCode(%s) names provider %q, want %q", to, resp.GetProvider(), provider)
	}
	if n := len(v.api.Requests()); n != before+1 {
		tb.Fatalf("the fake API got %d requests, want 1", n-before)
	}
	return v.lastCode(tb)
}

func TestVendorsDeliverAndFailOver(t *testing.T) {
	t.Parallel()
	vs := newVendors(t)
	for _, tc := range []struct {
		name               string
		to                 string
		primary, secondary *vendor
		outage             providertest.Response
	}{
		{name: "sms: Twilio, then Tencent when Twilio answers 503", to: phone, primary: vs.twilio, secondary: vs.tencent,
			outage: providertest.Response{Status: 503, Body: `{"code": 20503, "message": "Service unavailable", "status": 503}`}},
		{name: "email: Mailgun, then Aliyun when Mailgun answers 503", to: email, primary: vs.mailgun, secondary: vs.aliyun,
			outage: providertest.Response{Status: 503, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html>503 Service Unavailable</html>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := vs.sendVia(t, tc.to, signIn, "primary", tc.primary)
			vs.wantVerify(t, tc.to, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code delivered by the primary")

			tc.primary.respond(tc.outage)
			defer tc.primary.healthy()
			code = vs.sendVia(t, tc.to, forgot, "secondary", tc.secondary)
			vs.wantVerify(t, tc.to, forgot, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code delivered by the secondary")
		})
	}
}

func TestVendorPermanentRejectionDoesNotFailOver(t *testing.T) {
	t.Parallel()
	vs := newVendors(t)
	for _, tc := range []struct {
		name               string
		to                 string
		primary, secondary *vendor
		reject             providertest.Response
	}{
		{name: "Twilio 21211 invalid number", to: "+14155550199", primary: vs.twilio, secondary: vs.tencent,
			reject: providertest.Response{Status: 400, Body: `{"code": 21211, "message": "The 'To' number +14155550199 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}`}},
		{name: "Mailgun 401 bad key", to: "ops@example.org", primary: vs.mailgun, secondary: vs.aliyun,
			reject: providertest.Response{Status: 401, Header: map[string]string{"Content-Type": "text/plain"}, Body: "Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.primary.respond(tc.reject)
			defer tc.primary.healthy()
			before := len(tc.secondary.api.Requests())
			_, err := vs.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: tc.to, UsageType: signIn})
			wantStatus(t, err, codes.FailedPrecondition)
			if n := len(tc.secondary.api.Requests()) - before; n != 0 {
				t.Fatalf("a permanent rejection failed over: the secondary got %d requests", n)
			}
			if strings.Contains(err.Error(), tc.to) {
				t.Fatalf("error %q holds the recipient", err)
			}
			// The code was removed and the cooldown freed.
			vs.wantVerify(t, tc.to, signIn, "123456", otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "verify after a rejected send")
			tc.primary.healthy()
			code := vs.sendVia(t, tc.to, signIn, "primary", tc.primary)
			vs.wantVerify(t, tc.to, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code sent after the rejection")
		})
	}
}

func TestVendorSlowerThanDeadline(t *testing.T) {
	t.Parallel()
	vs := newVendors(t)
	for _, tc := range []struct {
		name               string
		to                 string
		primary, secondary *vendor
	}{
		{name: "sms", to: phone, primary: vs.twilio, secondary: vs.tencent},
		{name: "email", to: email, primary: vs.mailgun, secondary: vs.aliyun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []*vendor{tc.primary, tc.secondary} {
				slow := v.ok
				slow.Delay = time.Minute
				v.respond(slow)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := vs.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: tc.to, UsageType: signIn})
			if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
				t.Fatalf("providers slower than the deadline: %v, want DEADLINE_EXCEEDED or UNAVAILABLE", err)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Fatalf("the send took %s: the deadline did not bound the provider calls", took)
			}
			tc.primary.healthy()
			tc.secondary.healthy()
			// The cooldown was freed: once the provider is fast again a
			// send goes through (the server may still be finishing the
			// timed-out call).
			for i := 0; ; i++ {
				_, err := vs.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: tc.to, UsageType: signIn})
				if err == nil {
					break
				}
				if status.Code(err) != codes.ResourceExhausted || i == 100 {
					t.Fatalf("send after a timed-out one: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			vs.wantVerify(t, tc.to, signIn, tc.primary.lastCode(t), otpv1.VerifyResult_VERIFY_RESULT_OK, "code sent after the timeout")
		})
	}
}
