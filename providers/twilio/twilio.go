// Package twilio sends codes by SMS through Twilio's Programmable Messaging
// API, as Logto's Twilio connector does: POST
// /2010-04-01/Accounts/{AccountSID}/Messages.json with Basic auth
// AccountSID:AuthToken and the form fields To, MessagingServiceSid, Body and,
// when risk checks are disabled, RiskCheck=disable.
//
// It drives twilio-go's api/v2010 package alone; the SDK's root package
// would compile some sixty services. The SDK takes no context and has no
// base URL setting, so every Send builds a client on an *http.Client bound
// to its context, whose transport sends the request to the configured
// endpoint.
package twilio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/twilio/twilio-go/client"
	twapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

var (
	_ providers.Sender       = (*Provider)(nil)
	_ providers.UsageChecker = (*Provider)(nil)
	_ providers.Previewer    = (*Provider)(nil)
	_ providers.Describer    = (*Provider)(nil)
	_ providers.Texter       = (*Provider)(nil)
)

// Provider sends SMS through Twilio. It is safe for concurrent use.
type Provider struct {
	name             string
	accountSID       string
	authToken        redact.Secret
	messagingService string
	disableRiskCheck bool
	base             *url.URL // API base URL
	templates        map[otp.UsageType]*templates.Template
	ignored          []string // invitation templates that cannot carry the link
	transport        *http.Transport
	secrets          []string // what Scrub removes from Twilio's error text
}

// New returns a Twilio provider called name. It validates cfg and compiles
// its templates; every Send shares one HTTP transport.
func New(name string, cfg Config) (*Provider, error) {
	if name == "" {
		return nil, errors.New("create twilio provider: name is empty")
	}
	c, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("create twilio provider %q: %w", name, err)
	}
	return &Provider{
		name:             name,
		accountSID:       string(cfg.AccountSID),
		authToken:        cfg.AuthToken,
		messagingService: cfg.FromMessagingServiceSID,
		disableRiskCheck: cfg.DisableRiskCheck,
		base:             c.base,
		templates:        c.templates,
		ignored:          c.ignored,
		transport:        providers.NewTransport(),
		// The account SID is no secret, but error text shows it no more
		// than Describe does.
		secrets: []string{cfg.AuthToken.Reveal(), string(cfg.AccountSID)},
	}, nil
}

// compose returns the SMS text for msg and where it came from: the
// provider's template for the usage type, else its Generic one, each
// followed by the SMS autofill lines of msg.Content.Autofill, else the
// text rendered from otpd's templates (which already ends with them).
func (p *Provider) compose(msg otp.Message) (body, source string, err error) {
	if msg.Channel != otp.SMS {
		return "", "", providers.Permanent(p.name, "unsupported_channel",
			fmt.Errorf("send %s: twilio sends SMS only", msg.Channel))
	}
	if tpl, ok := providers.PickTemplate(p.templates, msg.UsageType); ok {
		used := msg.UsageType
		if _, own := p.templates[used]; !own {
			used = otp.Generic
		}
		body = tpl.Execute(templates.Data{Code: msg.Code, AppName: msg.AppName, TTL: msg.TTL, Link: msg.Link})
		// The autofill lines otpd's templates end with end Logto's too.
		body = templates.AppendAutofill(body, msg.Content.Autofill)
		return body, "template " + string(used), nil
	}
	if msg.Content.Text == "" {
		return "", "", providers.Permanent(p.name, "no_content", errors.New("send sms: the message has no text"))
	}
	return msg.Content.Text, "otpd templates", nil
}

// Send posts msg to Twilio's Messages API and returns the message SID
// ("SM..."). ctx's deadline bounds the whole call; the SDK does not retry.
func (p *Provider) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	body, _, err := p.compose(msg)
	if err != nil {
		return otp.Receipt{}, err
	}
	rt := &callTransport{base: p.base, next: p.transport}
	hc, err := providers.DeadlineClient(ctx, rt)
	if err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, fmt.Errorf("send sms: %w", err))
	}
	// Twilio's API does not redirect: a redirect means a wrong endpoint, and
	// following it would turn the POST into a GET. The SDK's own default
	// client does not follow redirects either.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	cl := &client.Client{Credentials: client.NewCredentials(p.accountSID, p.authToken.Reveal()), HTTPClient: hc}
	// The path takes the account SID from the client; unset, it would be
	// /2010-04-01/Accounts//Messages.json.
	cl.SetAccountSid(p.accountSID)
	params := (&twapi.CreateMessageParams{}).
		SetTo(msg.To).
		SetMessagingServiceSid(p.messagingService).
		SetBody(body)
	if p.disableRiskCheck {
		params.SetRiskCheck("disable")
	}
	m, err := twapi.NewApiServiceWithClient(cl).CreateMessage(params)
	if err != nil {
		return otp.Receipt{}, p.classify(ctx, msg, rt.status, err)
	}
	if m == nil || m.Sid == nil || *m.Sid == "" {
		return otp.Receipt{}, p.unexpected(rt.status, "without a message sid")
	}
	return otp.Receipt{Provider: p.name, MessageID: *m.Sid}, nil
}

// classify turns an error of CreateMessage into a *providers.Error. status
// is the HTTP status of Twilio's answer, 0 if there was none.
func (p *Provider) classify(ctx context.Context, msg otp.Message, status int, err error) *providers.Error {
	var (
		restErr *client.TwilioRestError
		urlErr  *url.Error
	)
	switch {
	case errors.As(err, &restErr):
		return p.restError(msg, status, restErr)
	case ctx.Err() != nil:
		// Whatever the SDK made of it, the call ran out of time or was
		// canceled.
		return providers.ClassifyTransport(p.name, fmt.Errorf("send sms: %w", ctx.Err()))
	case errors.As(err, &urlErr):
		// No answer, or one cut short (the transport reads the body). Its
		// URL is the SDK's, on api.twilio.com, with the account SID.
		err = &url.Error{Op: urlErr.Op, URL: p.errorURL(urlErr.URL), Err: urlErr.Err}
		return providers.ClassifyTransport(p.name, fmt.Errorf("send sms: %w", err))
	case status != 0:
		// A whole answer the SDK could not decode: an error page that is
		// not Twilio's JSON (a gateway's 502), or a success that is not
		// JSON. The SDK keeps the status only in its error text; the
		// transport saw it. The body is not quoted: it may echo the
		// request.
		return p.unexpected(status, "with a body that is not Twilio's JSON")
	}
	return providers.Transient(p.name, "sdk", errors.New("send sms: twilio sdk failed: "+providers.Scrub(err.Error(), msg, p.secrets...)))
}

// restError classifies an error Twilio answered with, by its error code
// when it has one (which becomes the Reason), else by its HTTP status.
func (p *Provider) restError(msg otp.Message, status int, e *client.TwilioRestError) *providers.Error {
	if status == 0 {
		status = e.Status // the SDK's own refusals carry a status and no answer
	}
	reason := ""
	if e.Code != 0 {
		reason = strconv.Itoa(e.Code)
	}
	text := fmt.Sprintf("send sms: twilio answered HTTP %d", status)
	if reason != "" {
		text += ", error " + reason
	}
	if e.Message != "" {
		text += ": " + providers.Scrub(e.Message, msg, p.secrets...)
	}
	if e.MoreInfo != "" {
		text += " (" + providers.Scrub(e.MoreInfo, msg, p.secrets...) + ")"
	}
	err := errors.New(text)
	switch e.Code {
	case 20429, // Too Many Requests: the account's API concurrency
		21611: // the sender's queue of outgoing messages is full
		return providers.Transient(p.name, reason, err)
	}
	// 21211 (invalid To), 21408 (region not enabled), 21610 (unsubscribed
	// recipient), 21614 (not a mobile number) are 400s, hence permanent;
	// 20003 (authentication) a 401; 20500 and 20503 5xx, hence transient.
	return providers.ClassifyHTTP(p.name, status, reason, err)
}

// unexpected is an answer that is neither a success nor a Twilio error:
// by its status, or, for a 2xx, "bad_response", transient. The code is the
// same whichever provider delivers it, so failing over costs at worst a
// second SMS with the same code, whereas a permanent failure would lose it.
func (p *Provider) unexpected(status int, what string) *providers.Error {
	err := fmt.Errorf("send sms: twilio answered HTTP %d %s", status, what)
	if status >= 200 && status <= 299 {
		return providers.Transient(p.name, "bad_response", err)
	}
	return providers.ClassifyHTTP(p.name, status, "", err)
}

// errorURL returns the URL the request went to, for error text: raw, the
// SDK's URL, on the endpoint, without query, and with the account SID
// masked.
func (p *Provider) errorURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	u = rebase(p.base, u)
	u.RawQuery = ""
	return strings.ReplaceAll(u.String(), p.accountSID, redact.Partial(p.accountSID))
}

// rebase returns a copy of u moved to base: base's scheme and host, and
// base's path put before u's.
func rebase(base, u *url.URL) *url.URL {
	out := *u
	out.Scheme, out.Host = base.Scheme, base.Host
	out.Path = base.Path + u.Path
	out.RawPath = ""
	return &out
}

// maxBody bounds how much of an answer is kept for the SDK to decode.
// Twilio's answers to a send are a few kilobytes at most.
const maxBody = 64 << 10

// callTransport sends the requests of one Send to the API base URL and
// notes the status of the answer. It is used by one Send only.
type callTransport struct {
	base   *url.URL
	next   http.RoundTripper
	status int
}

// RoundTrip sends r to t.base, with t.base's path put before r's. The host
// is always replaced, not only for a configured endpoint: the SDK moves
// api.twilio.com to another edge or region when TWILIO_EDGE or
// TWILIO_REGION are set in the environment, and the endpoint setting is
// meant to be the one place that decides where codes go.
//
// The answer's body is read and closed here, within the call's deadline:
// the SDK decodes an error answer but never closes it, which would hold
// its connection for good, and a decoder that stops short of the end of a
// body would keep the connection from being reused.
func (t *callTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.URL = rebase(t.base, r.URL)
	out.Host = "" // the Host header follows the URL
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	t.status = resp.StatusCode // only for a whole answer
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// Preview returns, on one line, what Send would post for msg, code
// included, such as
//
//	sms via Messaging Service MG0000, template Generic, body "Your code is 482915" (risk check disabled)
func (p *Provider) Preview(msg otp.Message) (string, error) {
	body, source, err := p.compose(msg)
	if err != nil {
		return "", err
	}
	s := fmt.Sprintf("sms via Messaging Service %s, %s, body %q", p.messagingService, source, body)
	if p.disableRiskCheck {
		s += " (risk check disabled)"
	}
	return s, nil
}

// Text returns the SMS text Send would post for msg and the name of the
// provider's own template it comes from ("SignIn", "Generic"), or "" when
// it is otpd's.
func (p *Provider) Text(msg otp.Message) (text, template string, err error) {
	body, source, err := p.compose(msg)
	if err != nil {
		return "", "", err
	}
	if t, own := strings.CutPrefix(source, "template "); own {
		template = t
	}
	return body, template, nil
}

// Describe returns the provider's settings on one line, with the account
// SID masked and the auth token left out.
func (p *Provider) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "twilio account %s, messaging service %s, endpoint %s, risk check ",
		redact.Partial(p.accountSID), p.messagingService, p.base)
	if p.disableRiskCheck {
		b.WriteString("disabled")
	} else {
		b.WriteString("on")
	}
	b.WriteString(", templates")
	n := 0
	for _, u := range append(slices.Clone(otp.UsageTypes), otp.OrganizationInvitation) {
		if _, ok := p.templates[u]; ok {
			fmt.Fprintf(&b, " %s", u)
			n++
		}
	}
	if n == 0 {
		b.WriteString(" none (otpd templates)")
	}
	if len(p.ignored) > 0 {
		fmt.Fprintf(&b, "; ignored (cannot carry the link): %s", strings.Join(p.ignored, ", "))
	}
	return b.String()
}

// CanServe reports whether the provider can send messages of usage type
// u. It always can, one of otpd's usage types: what has no template of its
// own (nor, for a code, a Generic one) goes out as rendered from otpd's
// templates.
func (p *Provider) CanServe(u otp.UsageType) error { return providers.CheckUsageType(u) }
