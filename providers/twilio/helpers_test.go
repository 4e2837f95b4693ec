package twilio_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/providertest"
	"github.com/otpd/otpd/providers/twilio"
)

const (
	providerName = "twilio"
	testSID      = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90"
	testToken    = "f00dbabe0123456789abcdef01234567"
	testService  = "MG11aa22bb33cc44dd55ee66ff77889900"
	testTo       = "+14155550123"
	testMsgSID   = "SM0123456789abcdef0123456789abcdef"
)

// maskedSID is the account SID as Describe shows it.
var maskedSID = redact.Partial(testSID)

// leaks are what no error text, preview or description may hold.
var leaks = []string{providertest.Code, testTo, strings.TrimPrefix(testTo, "+"), testToken, testSID}

func tpl(u, content string) twilio.Template { return twilio.Template{UsageType: u, Content: content} }

func testConfig(endpoint string, templates ...twilio.Template) twilio.Config {
	return twilio.Config{
		AccountSID: testSID, AuthToken: redact.Secret(testToken), FromMessagingServiceSID: testService,
		Templates: templates, Endpoint: endpoint,
	}
}

func newProvider(tb testing.TB, cfg twilio.Config) *twilio.Provider {
	tb.Helper()
	p, err := twilio.New(providerName, cfg)
	if err != nil {
		tb.Fatalf("twilio.New: %v", err)
	}
	return p
}

// fakeAPI starts a fake Twilio API that answers every request with resp,
// and a provider configured by cfg (its endpoint set to the fake) that
// calls it.
func fakeAPI(tb testing.TB, resp providertest.Response, cfg twilio.Config) (*providertest.Server, *twilio.Provider) {
	tb.Helper()
	s := providertest.NewServer(tb, func(providertest.Request) providertest.Response { return resp })
	cfg.Endpoint = s.URL + cfg.Endpoint // a configured endpoint is a path prefix
	return s, newProvider(tb, cfg)
}

func smsMessage(u otp.UsageType) otp.Message {
	return providertest.Message(otp.SMS, testTo, u)
}

// created is Twilio's 201 answer to a send, for a message with SID sid.
func created(tb testing.TB, sid string) providertest.Response {
	tb.Helper()
	return providertest.Response{Status: 201, Body: mustJSON(tb, map[string]any{
		"sid": sid, "account_sid": testSID, "messaging_service_sid": testService, "to": testTo,
		"status": "accepted", "num_segments": "0", "direction": "outbound-api", "api_version": "2010-04-01",
		"uri": "/2010-04-01/Accounts/" + testSID + "/Messages/" + sid + ".json",
	})}
}

// restError is a Twilio error answer.
func restError(tb testing.TB, status, code int, message string) providertest.Response {
	tb.Helper()
	body := map[string]any{"message": message, "status": status}
	if code != 0 {
		body["code"] = code
		body["more_info"] = "https://www.twilio.com/docs/errors/" + strconv.Itoa(code)
	}
	return providertest.Response{Status: status, Body: mustJSON(tb, body)}
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// sendBody sends msg through p and returns the Body form field the fake
// API s received.
func sendBody(tb testing.TB, s *providertest.Server, p *twilio.Provider, msg otp.Message) string {
	tb.Helper()
	if _, err := p.Send(tb.Context(), msg); err != nil {
		tb.Fatalf("Send: %v", err)
	}
	return s.Last(tb).Form.Get("Body")
}

// wantNoRequest fails the test if the fake API received a request.
func wantNoRequest(tb testing.TB, s *providertest.Server) {
	tb.Helper()
	if n := len(s.Requests()); n != 0 {
		tb.Errorf("the fake API got %d requests, want none", n)
	}
}
