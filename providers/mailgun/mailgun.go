// Package mailgun sends email codes through Mailgun's messages API
// (POST {endpoint}/v3/{domain}/messages, Basic auth "api":apiKey), configured
// as Logto's Mailgun connector is: per usage type, either raw content (html,
// text) rendered by otpd, or a template stored in Mailgun that gets its
// variables, the code added, as JSON in the X-Mailgun-Variables header.
package mailgun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mailgun/mailgun-go/v4"

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
)

// Provider sends email through Mailgun. It is safe for concurrent use.
type Provider struct {
	name       string
	domain     string
	from       string
	apiBase    string
	apiKey     redact.Secret // kept to scrub it from Mailgun's error text
	deliveries map[otp.UsageType]*delivery
	ignored    []string
	mg         *mailgun.MailgunImpl
}

// New returns a Mailgun provider called name. It validates cfg, compiles its
// templates and builds the SDK client on a transport of its own. The SDK's
// default client has no timeout; this one has none either, because every
// Send passes its context, whose deadline bounds the call.
func New(name string, cfg Config) (*Provider, error) {
	if name == "" {
		return nil, errors.New("create mailgun provider: name is empty")
	}
	s, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("create mailgun provider %q: %w", name, err)
	}
	mg := mailgun.NewMailgun(cfg.Domain, cfg.APIKey.Reveal())
	mg.SetAPIBase(s.apiBase)
	mg.SetClient(&http.Client{
		Transport: providers.NewTransport(),
		// Mailgun's API does not redirect; a redirect means a wrong
		// endpoint, and following it would turn the POST into a GET.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	})
	return &Provider{
		name:       name,
		domain:     cfg.Domain,
		from:       cfg.From,
		apiBase:    s.apiBase,
		apiKey:     cfg.APIKey,
		deliveries: s.deliveries,
		ignored:    s.ignored,
		mg:         mg,
	}, nil
}

// wire is what one send puts on the wire, besides from and to.
type wire struct {
	source    string // "deliveries.SignIn" or "otpd templates"
	subject   string
	replyTo   string
	html      string
	text      string
	template  string
	variables map[string]any // template mode: the configured variables and "code"
}

// compose builds the message for msg: its usage type's delivery, else
// Generic's, else the content rendered from otpd's templates.
func (p *Provider) compose(msg otp.Message) (wire, error) {
	if msg.Channel != otp.Email {
		return wire{}, providers.Permanent(p.name, "unsupported_channel",
			fmt.Errorf("channel %q: mailgun sends email only", msg.Channel))
	}
	d, ok := providers.PickTemplate(p.deliveries, msg.UsageType)
	if !ok {
		w := wire{source: "otpd templates", subject: msg.Content.Subject, html: msg.Content.HTML, text: msg.Content.Text}
		if w.html == "" && w.text == "" {
			return wire{}, providers.Permanent(p.name, "no_content", errors.New("the message has neither html nor text"))
		}
		return w, nil
	}
	data := templates.Data{Code: msg.Code, AppName: msg.AppName, TTL: msg.TTL, Link: msg.Link}
	w := wire{source: d.key, subject: msg.Content.Subject, replyTo: d.replyTo}
	if d.subject != nil {
		w.subject = d.subject.Execute(data)
	}
	if d.template != "" {
		w.template = d.template
		w.variables = make(map[string]any, len(d.variables)+1)
		for k, v := range d.variables {
			w.variables[k] = v
		}
		if msg.UsageType == otp.OrganizationInvitation {
			w.variables["link"] = msg.Link // as Logto passes its payload
		} else {
			w.variables["code"] = msg.Code // the code wins over a configured "code"
		}
		return w, nil
	}
	if d.html != nil {
		w.html = d.html.Execute(data)
	}
	if d.text != nil {
		w.text = d.text.Execute(data)
	}
	return w, nil
}

// Send posts msg to Mailgun's messages API and returns Mailgun's message id
// ("<20261121.1@mg.example.com>"). ctx bounds the whole call; the SDK does
// not retry.
func (p *Provider) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, err)
	}
	w, err := p.compose(msg)
	if err != nil {
		return otp.Receipt{}, err
	}
	// The SDK always sends "text", empty in template mode; Mailgun ignores
	// text when a template is given.
	m := mailgun.NewMessage(p.from, w.subject, w.text, msg.To)
	if w.html != "" {
		m.SetHTML(w.html)
	}
	if w.replyTo != "" {
		m.SetReplyTo(w.replyTo) // h:Reply-To
	}
	if w.template != "" {
		m.SetTemplate(w.template)
		// Template variables, unlike AddVariable's "v:" fields, travel as
		// one JSON object in h:X-Mailgun-Variables.
		for k, v := range w.variables {
			if err := m.AddTemplateVariable(k, v); err != nil {
				return otp.Receipt{}, providers.Permanent(p.name, "invalid_message", fmt.Errorf("add template variable: %w", err))
			}
		}
	}
	_, id, err := p.mg.Send(ctx, m)
	if err != nil {
		return otp.Receipt{}, p.classify(ctx, err, msg)
	}
	if id == "" {
		return otp.Receipt{}, providers.Transient(p.name, "bad_response", errors.New("mailgun answered 200 without a message id"))
	}
	return otp.Receipt{Provider: p.name, MessageID: id}, nil
}

// classify turns an SDK error into a *providers.Error whose text holds no
// secret, code or full recipient: the SDK's own error text (URL and raw
// response body) is never quoted, only Mailgun's "message", scrubbed.
func (p *Provider) classify(ctx context.Context, err error, msg otp.Message) *providers.Error {
	var (
		resp    *mailgun.UnexpectedResponseError
		urlErr  *url.Error
		netErr  net.Error
		synErr  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &resp):
		return p.httpError(resp, msg)
	case ctx.Err() != nil:
		return providers.ClassifyTransport(p.name, fmt.Errorf("send message: %w", ctx.Err()))
	case errors.As(err, &urlErr):
		return providers.ClassifyTransport(p.name, urlErr)
	case errors.As(err, &netErr), errors.Is(err, io.ErrUnexpectedEOF):
		return providers.ClassifyTransport(p.name, fmt.Errorf("read response: %w", err))
	case errors.As(err, &synErr), errors.As(err, &typeErr):
		return providers.Transient(p.name, "bad_response", fmt.Errorf("decode mailgun's answer: %w", err))
	case errors.Is(err, mailgun.ErrInvalidMessage):
		return providers.Permanent(p.name, "invalid_message", errors.New("the SDK refused the message as incomplete"))
	default:
		return providers.Permanent(p.name, "sdk", errors.New("send message: "+providers.Scrub(err.Error(), msg, p.apiKey.Reveal())))
	}
}

// httpError classifies a non-2xx answer by its status (Mailgun has no error
// codes of its own), quoting the body's "message" scrubbed: Mailgun echoes
// parameters such as the recipient.
func (p *Provider) httpError(resp *mailgun.UnexpectedResponseError, msg otp.Message) *providers.Error {
	text := fmt.Sprintf("mailgun answered HTTP %d", resp.Actual)
	var body struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(resp.Data, &body) == nil && body.Message != "" {
		text += ": " + providers.Scrub(body.Message, msg, p.apiKey.Reveal())
	}
	return providers.ClassifyHTTP(p.name, resp.Actual, "", errors.New(text))
}

// Preview returns, on one line, what Send would post for msg, code
// included: the delivery used, from, reply-to, subject, and either the size
// of the HTML and the text, or the template and its variables. For example:
//
//	email via deliveries.SignIn from "Acme <no-reply@mg.example.com>" subject "Welcome back" template "logto-sign-in" variables {"bar":"baz","code":"482915"}
func (p *Provider) Preview(msg otp.Message) (string, error) {
	w, err := p.compose(msg)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "email via %s from %q", w.source, p.from)
	if w.replyTo != "" {
		fmt.Fprintf(&b, " reply-to %q", w.replyTo)
	}
	fmt.Fprintf(&b, " subject %q", w.subject)
	if w.template != "" {
		vars, err := json.Marshal(w.variables) // as the SDK encodes them: compact, keys sorted
		if err != nil {
			return "", fmt.Errorf("encode template variables: %w", err)
		}
		fmt.Fprintf(&b, " template %q variables %s", w.template, vars)
		return b.String(), nil
	}
	if w.html != "" {
		fmt.Fprintf(&b, " html %d bytes", len(w.html))
		if w.text == "" {
			fmt.Fprintf(&b, " %q", providers.PreviewHTML(w.html, 120))
		}
	}
	if w.text != "" {
		fmt.Fprintf(&b, " text %q", w.text)
	}
	return b.String(), nil
}

// Describe returns the provider's settings on one line: domain, API base,
// sender, and what each usage type sends. The API key is left out.
func (p *Provider) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mailgun domain %s, API %s, from %q", p.domain, p.apiBase, p.from)
	for _, u := range append(slices.Clone(otp.UsageTypes), otp.OrganizationInvitation) {
		fmt.Fprintf(&b, ", %s: ", u)
		d, ok := p.deliveries[u]
		switch {
		case !ok && u != otp.Generic && u != otp.OrganizationInvitation && p.deliveries[otp.Generic] != nil:
			b.WriteString("as Generic")
		case !ok:
			b.WriteString("otpd templates")
		case d.template != "":
			fmt.Fprintf(&b, "template %q", d.template)
		default:
			b.WriteString("raw")
			if d.html != nil {
				b.WriteString(" html")
			}
			if d.text != nil {
				b.WriteString(" text")
			}
		}
	}
	if len(p.ignored) > 0 {
		fmt.Fprintf(&b, "; ignored (cannot carry the link): %s", strings.Join(p.ignored, ", "))
	}
	return b.String()
}

// CanServe reports whether the provider can send messages of usage type
// u. It always can, one of otpd's usage types: what has no delivery of its
// own (nor, for a code, a Generic one) goes out as rendered from otpd's
// templates.
func (p *Provider) CanServe(u otp.UsageType) error { return providers.CheckUsageType(u) }
