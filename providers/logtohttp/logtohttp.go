// Package logtohttp is otpd's provider type "http": it POSTs each code to an
// endpoint of the operator's in the very request that Logto's HTTP SMS and
// HTTP email connectors (@logto/connector-http-sms 0.2.1,
// @logto/connector-http-email 0.4.3) send, so that an endpoint written for
// Logto joins otpd's routing and failover unchanged:
//
//	POST {endpoint}
//	Content-Type: application/json
//	Authorization: {authorization}        (when configured)
//
//	{"to": "14155550123", "type": "SignIn", "payload": {"code": "482915", "locale": "en"}}
//
// An OrganizationInvitation carries the link instead of the code, as
// Logto's does:
//
//	{"to": "jane@example.com", "type": "OrganizationInvitation", "payload": {"link": "https://...", "locale": "en"}}
//
// SMS "to" is the number's digits without "+", as Logto sends it; email
// "to" is the address. "type" is Logto's TemplateType, which otp.UsageType
// spells the same way. The endpoint writes and sends the message itself, so
// otpd's templates are not used.
//
// The package is not called http, the type's name, because it would shadow
// net/http in its own files and in every importer; it is named after the
// wire contract it keeps.
package logtohttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
)

var (
	_ providers.Sender       = (*Provider)(nil)
	_ providers.UsageChecker = (*Provider)(nil)
	_ providers.Previewer    = (*Provider)(nil)
	_ providers.Describer    = (*Provider)(nil)
)

// maxBody bounds how much of an answer is read: its text only goes into
// error messages, cut to 200 bytes, and Logto ignores it.
const maxBody = 64 << 10

// Provider posts codes to an endpoint written for Logto's HTTP connectors.
// It serves whichever channel a message is on; the registry makes every
// http provider name the one (and so the Logto connector) it stands for. It
// is safe for concurrent use.
type Provider struct {
	name          string
	endpoint      string // as configured, posted to as it is
	shown         string // endpoint with query values masked
	authorization redact.Secret
	client        *http.Client
	secrets       []string // what Scrub removes from the endpoint's text
}

// New returns an http provider called name. It validates cfg; every Send
// shares one HTTP transport.
func New(name string, cfg Config) (*Provider, error) {
	if name == "" {
		return nil, errors.New("create http provider: name is empty")
	}
	u, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("create http provider %q: %w", name, err)
	}
	auth := cfg.Authorization.Reveal()
	secrets := []string{auth}
	// An endpoint may echo the token without its scheme ("Bearer ").
	if _, token, ok := strings.Cut(auth, " "); ok {
		secrets = append(secrets, strings.TrimSpace(token))
	}
	for _, vs := range u.Query() {
		secrets = append(secrets, vs...)
	}
	return &Provider{
		name:          name,
		endpoint:      cfg.Endpoint,
		shown:         displayURL(u),
		authorization: cfg.Authorization,
		client: &http.Client{
			Transport: providers.NewTransport(),
			// Logto's got follows redirects and keeps the POST; net/http
			// would turn a 301 or 302 into a GET without the body, and drops
			// Authorization on the way to another host. A redirect is
			// reported instead, so that the operator configures the URL it
			// points to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		secrets: secrets,
	}, nil
}

// body is the JSON body of Logto's HTTP connectors (connector-kit's
// SendMessageData), with the end user's address as "ip" when the caller
// gave one (client_ip), as Logto's experience routes do. Of the payload,
// otpd sends what
// Logto's experience routes send for a code, less uiLocales (the raw
// ui_locales, which otpd does not have) and the email-only application,
// organization and user context.
type body struct {
	To      string  `json:"to"`
	Type    string  `json:"type"`
	Payload payload `json:"payload"`
	IP      string  `json:"ip,omitempty"`
}

// payload holds the code, or the link of an OrganizationInvitation (whose
// payload has no code in Logto's either).
type payload struct {
	Code   string `json:"code,omitempty"`
	Link   string `json:"link,omitempty"`
	Locale string `json:"locale,omitempty"`
}

// encode returns the request body for msg.
func (p *Provider) encode(msg otp.Message) ([]byte, error) {
	b := body{To: msg.To, Type: string(msg.UsageType), Payload: payload{Code: msg.Code, Link: msg.Link, Locale: msg.Locale}, IP: msg.ClientIP}
	switch msg.Channel {
	case otp.SMS:
		// Logto's phone numbers are digits only (phoneRegEx /^\d+$/), and
		// endpoints written for it add the "+" themselves.
		b.To = strings.TrimPrefix(msg.To, "+")
	case otp.Email:
	default:
		return nil, providers.Permanent(p.name, "unsupported_channel", fmt.Errorf("send %s: http sends sms or email", msg.Channel))
	}
	if err := providers.CheckUsageType(msg.UsageType); err != nil {
		return nil, providers.Permanent(p.name, "invalid_message", fmt.Errorf("send %s: %w", msg.Channel, err))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as JSON.stringify: an address may hold "&"
	if err := enc.Encode(b); err != nil {
		return nil, providers.Permanent(p.name, "invalid_message", fmt.Errorf("encode body: %w", err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Send posts msg to the endpoint. Any 2xx, and 304, is a delivery, as it is
// for Logto; the answer's body is not read for anything else. ctx's
// deadline bounds the whole call, reading the answer included; nothing is
// retried here.
func (p *Provider) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, fmt.Errorf("send %s: %w", msg.Channel, err))
	}
	b, err := p.encode(msg)
	if err != nil {
		return otp.Receipt{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(b))
	if err != nil {
		return otp.Receipt{}, providers.Permanent(p.name, "invalid_request", fmt.Errorf("send %s: build the request: %s", msg.Channel, p.shown))
	}
	req.Header.Set("Content-Type", "application/json")
	if a := p.authorization.Reveal(); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return otp.Receipt{}, p.transportError(ctx, msg, err)
	}
	text, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299 || resp.StatusCode == http.StatusNotModified
	if err != nil && !ok {
		// A failure whose explanation was cut short is still the failure
		// its status says.
		text = nil
	}
	if ok {
		return otp.Receipt{Provider: p.name}, nil
	}
	return otp.Receipt{}, p.httpError(msg, resp.StatusCode, string(text))
}

// transportError classifies an error that kept the request from an answer.
// The *url.Error of net/http names the endpoint; its query values are
// masked.
func (p *Provider) transportError(ctx context.Context, msg otp.Message, err error) *providers.Error {
	if ctx.Err() != nil {
		// Whatever the transport made of it, the call ran out of time or
		// was canceled.
		err = fmt.Errorf("post to %s: %w", p.shown, ctx.Err())
	} else if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = &url.Error{Op: ue.Op, URL: p.shown, Err: ue.Err}
	}
	return providers.ClassifyTransport(p.name, fmt.Errorf("send %s: %w", msg.Channel, err))
}

// httpError classifies an answer that is no delivery, by its status. The
// endpoint's text is quoted scrubbed: Logto shows it to the user, so
// endpoints written for it echo the recipient or worse.
func (p *Provider) httpError(msg otp.Message, status int, text string) *providers.Error {
	s := fmt.Sprintf("send %s: %s answered HTTP %d", msg.Channel, p.shown, status)
	if status >= 300 && status <= 399 {
		s += " (a redirect, not followed: configure the URL it points to as endpoint)"
	}
	if t := providers.Scrub(text, msg, p.secrets...); t != "" {
		s += ": " + t
	}
	return providers.ClassifyHTTP(p.name, status, "", errors.New(s))
}

// Preview returns, on one line, the request Send would make for msg, code
// included, such as
//
//	POST https://hooks.example.com/sms {"to":"14155550100","type":"SignIn","payload":{"code":"123456","locale":"en"}}
func (p *Provider) Preview(msg otp.Message) (string, error) {
	b, err := p.encode(msg)
	if err != nil {
		return "", err
	}
	return "POST " + p.shown + " " + string(b), nil
}

// Describe returns the provider's settings on one line: the endpoint with
// query values masked, and of the authorization only its scheme.
func (p *Provider) Describe() string {
	auth := "none"
	if a := p.authorization.Reveal(); a != "" {
		auth = "<redacted>"
		if scheme, _, ok := strings.Cut(a, " "); ok && isScheme(scheme) {
			auth = scheme + " <redacted>"
		}
	}
	return fmt.Sprintf("Logto HTTP connector endpoint %s, authorization %s; the endpoint writes the message (otpd's templates unused)", p.shown, auth)
}

// isScheme reports whether s is a well-known auth scheme ("Bearer",
// "Basic"), which Describe may show; any other first word may be part of
// the secret.
func isScheme(s string) bool {
	switch strings.ToLower(s) {
	case "basic", "bearer", "token", "digest", "apikey", "api-key", "key", "bot":
		return true
	}
	return false
}

// CanServe reports whether the provider can send messages of usage type u.
// It can send every one of otpd's, invitations included: the endpoint
// writes the message.
func (p *Provider) CanServe(u otp.UsageType) error { return providers.CheckUsageType(u) }
