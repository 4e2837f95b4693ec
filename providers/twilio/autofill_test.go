package twilio_test

import (
	"testing"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/providertest"
	"github.com/otpd/otpd/templates"
)

// TestSendAutofill: with SMS autofill configured, the Body Twilio receives
// ends with the app hash line and the WebOTP line of the message's code,
// whether it is rendered from a Logto template of the provider's or from
// otpd's templates, and Text tells -check the same body.
func TestSendAutofill(t *testing.T) {
	t.Parallel()
	const lines = "FA+9qCX9VSu\n@example.com #" + providertest.Code
	r, err := templates.New(templates.Options{AppName: "Acme", WebOTPDomain: "example.com", AndroidAppHash: "FA+9qCX9VSu"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		templates    []string // Logto template contents, for Generic
		wantBody     string
		wantTemplate string
	}{
		{"Logto template", []string{"Your code is {{code}}.\n"}, "Your code is " + providertest.Code + ".\n\n" + lines, "Generic"},
		{"otpd templates", nil, "Acme: " + providertest.Code + " is your sign-in code. It expires in 10 min. Don't share it with anyone.\n\n" + lines, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig("")
			for _, c := range tc.templates {
				cfg.Templates = append(cfg.Templates, tpl("Generic", c))
			}
			s, p := fakeAPI(t, created(t, testMsgSID), cfg)
			msg := smsMessage(otp.SignIn)
			content, err := r.Render(otp.SMS, "en", otp.SignIn, templates.Data{Code: msg.Code, AppName: msg.AppName, TTL: msg.TTL})
			if err != nil {
				t.Fatal(err)
			}
			msg.Content = content
			if got := sendBody(t, s, p, msg); got != tc.wantBody {
				t.Errorf("Body on the wire:\n%s\nwant:\n%s", got, tc.wantBody)
			}
			text, template, err := p.Text(msg)
			if err != nil || text != tc.wantBody || template != tc.wantTemplate {
				t.Errorf("Text = %q, %q, %v; want the body sent and template %q", text, template, err, tc.wantTemplate)
			}
			if err := r.Autofill().Check(text, msg.Code); err != nil {
				t.Errorf("the body breaks autofill: %v", err)
			}
		})
	}
}
