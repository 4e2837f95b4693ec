// Package aliyundm sends codes by email through Aliyun DirectMail (API
// SingleSendMail, version 2015-11-23), as Logto's Aliyun Direct Mail
// connector does: from the configured sender address (AccountName,
// AddressType=1, ReplyToAddress=false), with the provider's own subject and
// HTML content for the usage type, its Generic ones, or otherwise the
// subject and body otpd rendered from its own templates.
//
// The official SDK (github.com/aliyun/alibaba-cloud-sdk-go) is used with
// care, because of how it works:
//
//   - It signs every parameter into the query string of a POST, the mail
//     included, so the URL holds the AccessKeyId, the signature, the
//     recipient and the code. Its transport errors quote that URL, and
//     SignatureDoesNotMatch answers quote the string to sign. Errors here
//     are built from the SDK's error types, never from their text; the
//     vendor's message is quoted scrubbed and cut before any string to
//     sign. (The SDK also prints whole URLs to stdout when the environment
//     variable DEBUG contains "sdk": never set it in production.)
//   - It has no context support, and it writes per-request timeouts into
//     its shared *http.Client, and into the DialContext and TLS settings of
//     an *http.Transport it is given, on every call: one client is not safe
//     for concurrent sends. Send therefore builds a light SDK client per
//     call, whose transport wraps the provider's shared one (so the SDK
//     leaves it alone) and carries the call's context, and whose timeouts
//     are what is left of the context's deadline.
//   - Its default scheme is HTTP; requests here always say https, unless
//     the configured endpoint is an http:// test double.
//   - Its retry loop is off by default; the config says so explicitly. The
//     Router is the only place that retries.
package aliyundm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	alierrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/dm"

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

const (
	// defaultTimeout bounds a send whose context has no deadline. The
	// Router always sets one.
	defaultTimeout = 10 * time.Second
	// connectTimeout is the longest a connection may take to open, as the
	// dialer of providers.NewTransport allows.
	connectTimeout = 5 * time.Second
)

// Provider sends codes through Aliyun DirectMail. It is safe for concurrent
// use.
type Provider struct {
	name        string
	cfg         Config
	settings    settings
	baseURL     string // scheme://host/, the only part of a request URL errors show
	transport   *http.Transport
	credentials *credentials.StaticAKCredentialsProvider
	secrets     []string // what Scrub removes from DirectMail's messages
}

// New returns an Aliyun DirectMail provider called name. It compiles the
// templates and builds the credentials and the HTTP transport that every
// Send shares; the SDK client itself is built per Send (see the package
// documentation).
func New(name string, cfg Config) (*Provider, error) {
	if name == "" {
		return nil, errors.New("create aliyun-dm provider: name is empty")
	}
	s, err := cfg.resolve()
	if err != nil {
		return nil, fmt.Errorf("create aliyun-dm provider %q: %w", name, err)
	}
	return &Provider{
		name:        name,
		cfg:         cfg,
		settings:    s,
		baseURL:     s.scheme + "://" + s.host + "/",
		transport:   providers.NewTransport(),
		credentials: credentials.NewStaticAKCredentialsProvider(string(cfg.AccessKeyID), cfg.AccessKeySecret.Reveal()),
		secrets:     []string{cfg.AccessKeySecret.Reveal(), string(cfg.AccessKeyID)},
	}, nil
}

// Send sends msg's code by email. ctx's deadline bounds the whole call:
// Send returns when ctx ends even if the SDK has not, and the HTTP request,
// which carries ctx, is aborted then too. A DirectMail error code becomes
// the error's Reason.
func (p *Provider) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	m, err := p.compose(msg)
	if err != nil {
		return otp.Receipt{}, err
	}
	if err := ctx.Err(); err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	hc, err := providers.DeadlineClient(ctx, p.transport)
	if err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, err)
	}
	client, err := dm.NewClientWithOptions(p.settings.region, &sdk.Config{
		AutoRetry:    false, // the Router is the only place that retries
		MaxRetryTime: 0,
		Scheme:       strings.ToUpper(p.settings.scheme),
		// Not an *http.Transport, so the SDK does not rewrite its dialer
		// and TLS settings, which concurrent sends share.
		Transport: hc.Transport,
		Timeout:   hc.Timeout,
	}, p.credentials)
	if err != nil {
		return otp.Receipt{}, providers.Permanent(p.name, "sdk",
			fmt.Errorf("send mail: build aliyun sdk client: %T", err))
	}
	// The SDK names spans after the request URI, query string included,
	// when a global OpenTracing tracer is registered.
	client.SetCloseTrace(true)

	req := p.request(msg, m, hc.Timeout)
	type result struct {
		resp *dm.SingleSendMailResponse
		err  error
	}
	done := make(chan result, 1)
	// When ctx ends first, this goroutine's result is dropped. It ends soon
	// after: its request carries ctx, and the SDK's own read timeout (what
	// was left of ctx's deadline) bounds it besides.
	go func() {
		resp, err := client.SingleSendMail(req)
		done <- result{resp, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		select {
		case r = <-done: // an answer that came in time is not thrown away
		default:
			return otp.Receipt{}, p.noAnswer(ctx)
		}
	}
	if r.err != nil {
		return otp.Receipt{}, p.classify(ctx, msg, r.err)
	}
	return p.receipt(r.resp)
}

// request builds the SingleSendMail request for msg. A new one every time:
// the SDK writes the signature, nonce and timestamp into the request.
func (p *Provider) request(msg otp.Message, m mailContent, timeout time.Duration) *dm.SingleSendMailRequest {
	req := dm.CreateSingleSendMailRequest()
	req.Scheme = p.settings.scheme // the SDK's default is HTTP
	req.Domain = p.settings.host
	// The read timeout becomes the SDK's http.Client.Timeout. The connect
	// timeout is applied by the SDK only to an *http.Transport, which it
	// is not given: the transport's dialer and ctx bound the connect.
	req.SetReadTimeout(timeout)
	req.SetConnectTimeout(min(timeout, connectTimeout))
	req.AccountName = p.cfg.AccountName
	req.AddressType = requests.NewInteger(1) // the sender address itself, not a random one
	req.ReplyToAddress = requests.NewBoolean(false)
	req.ToAddress = msg.To
	req.FromAlias = p.cfg.FromAlias // the SDK leaves empty parameters out
	req.Subject = m.subject
	req.HtmlBody = m.html
	req.TextBody = m.text
	return req
}

// receipt checks a SingleSendMail answer that is not an error. EnvId is
// DirectMail's ID of the mail; answers without one (older API behaviour)
// still carry the RequestId, which DirectMail support can trace the mail
// by, so it stands in. An answer with neither is no proof of acceptance.
func (p *Provider) receipt(resp *dm.SingleSendMailResponse) (otp.Receipt, error) {
	if resp == nil {
		return otp.Receipt{}, p.badResponse("no response")
	}
	id := resp.EnvId
	if id == "" {
		id = resp.RequestId
	}
	if id == "" {
		return otp.Receipt{}, p.badResponse("success answer has neither EnvId nor RequestId")
	}
	return otp.Receipt{Provider: p.name, MessageID: id}, nil
}

// badResponse is an answer that is neither a success nor a DirectMail
// error, as a proxy might give. It is transient: the code is the same
// whichever provider delivers it, so failing over costs at worst a second
// mail with the same code, whereas a permanent failure would lose it.
func (p *Provider) badResponse(what string) *providers.Error {
	return providers.Transient(p.name, "bad_response", fmt.Errorf("send mail: %s", what))
}

// classify turns an error of SingleSendMail into a *providers.Error. It
// looks at types only: the SDK's error texts hold the request URL.
func (p *Provider) classify(ctx context.Context, msg otp.Message, err error) *providers.Error {
	var se *alierrors.ServerError
	if errors.As(err, &se) {
		return p.vendorError(msg, se)
	}
	// No answer, or none the SDK could read. A context that ended explains
	// any of these.
	if ctx.Err() != nil {
		return p.noAnswer(ctx)
	}
	var ce *alierrors.ClientError
	if errors.As(err, &ce) {
		switch code := ce.ErrorCode(); {
		case code == alierrors.JsonUnmarshalErrorCode:
			return p.badResponse("success answer is not DirectMail JSON")
		case code == alierrors.TimeoutErrorCode: // only from the SDK's retry loop, which is off
			return providers.Transient(p.name, "timeout", errors.New("send mail: timed out"))
		case ce.OriginError() == nil:
			return providers.Transient(p.name, code, fmt.Errorf("send mail: aliyun sdk failed: %s", code))
		}
		err = ce.OriginError()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The same failure, with the request URL cut down to scheme and
		// host. ClassifyTransport tells a timeout from a refused
		// connection by the cause.
		return providers.ClassifyTransport(p.name, &url.Error{Op: ue.Op, URL: p.baseURL, Err: ue.Err})
	}
	// Reading the answer failed (a reset connection): no URL in sight.
	return providers.ClassifyTransport(p.name, fmt.Errorf("send mail: read response from %s: %w", p.baseURL, err))
}

// noAnswer is a send whose context ended before DirectMail answered:
// transient "timeout" or "canceled".
func (p *Provider) noAnswer(ctx context.Context) *providers.Error {
	return providers.ClassifyTransport(p.name, fmt.Errorf("send mail: no answer from %s: %w", p.baseURL, ctx.Err()))
}

// vendorError is a failure DirectMail, or something in front of it,
// answered with.
func (p *Provider) vendorError(msg otp.Message, se *alierrors.ServerError) *providers.Error {
	code, status := se.ErrorCode(), se.HttpStatus()
	if code == "" {
		// Not DirectMail JSON (a gateway's error page). The SDK takes the
		// whole body as the message: left out.
		return providers.ClassifyHTTP(p.name, status, "",
			fmt.Errorf("send mail: HTTP status %d without a DirectMail error", status))
	}
	err := fmt.Errorf("send mail: aliyun %s (HTTP %d): %s (request %s)",
		code, status, p.scrub(se.Message(), msg), orNone(se.RequestId()))
	switch {
	case strings.HasPrefix(code, "Throttling"),
		// DirectMail says these with 5xx, but a code is a code.
		strings.HasPrefix(code, "InternalError"),
		strings.HasPrefix(code, "ServiceUnavailable"):
		return providers.Transient(p.name, code, err)
	case strings.HasPrefix(code, "InvalidToAddress"), // bad or suppressed recipient
		strings.HasPrefix(code, "InvalidAccessKeyId"),
		strings.HasPrefix(code, "InvalidAccessKeySecret"),
		code == "SignatureDoesNotMatch",
		code == "IncompleteSignature",
		strings.HasPrefix(code, "Forbidden"), // RAM policy, suspended account, quota
		strings.HasPrefix(code, "InvalidMailAddress"),
		strings.HasPrefix(code, "InvalidSendMail"):
		return providers.Permanent(p.name, code, err)
	default:
		// Other codes by status: 4xx permanent, 429 and 5xx transient.
		return providers.ClassifyHTTP(p.name, status, code, err)
	}
}

// scrub makes a DirectMail message fit to quote. SignatureDoesNotMatch
// quotes the server's string to sign, which holds every parameter
// percent-encoded twice (the recipient too, where Scrub would miss it):
// it is cut off.
func (p *Provider) scrub(text string, msg otp.Message) string {
	if i := strings.Index(strings.ToLower(text), "string to sign"); i >= 0 {
		text = text[:i] + "string to sign omitted"
	}
	once := url.QueryEscape(msg.To)
	return providers.Scrub(text, msg, append(p.secrets, once, url.QueryEscape(once))...)
}

// mailContent is the subject and body of one mail.
type mailContent struct {
	subject string
	html    string // HtmlBody; empty when the body is text
	text    string // TextBody, only when there is no HTML
	source  string // where they come from, for Preview
}

// compose renders the subject and body for msg: the provider's template for
// the usage type, else its Generic, else otpd's rendering in msg.Content.
func (p *Provider) compose(msg otp.Message) (mailContent, error) {
	if msg.Channel != otp.Email {
		return mailContent{}, providers.Permanent(p.name, "unsupported_channel",
			fmt.Errorf("send %s: aliyun directmail sends email only", msg.Channel))
	}
	// DirectMail takes up to 100 comma-separated addresses in ToAddress. A
	// quoted local part may hold a comma; one recipient per code.
	if strings.ContainsAny(msg.To, ",;") {
		return mailContent{}, providers.Permanent(p.name, "invalid_recipient",
			fmt.Errorf("send mail: recipient %s holds a list separator", redact.Recipient(msg.To)))
	}
	if t, ok := providers.PickTemplate(p.settings.templates, msg.UsageType); ok {
		d := templates.Data{Code: msg.Code, AppName: msg.AppName, TTL: msg.TTL, Link: msg.Link}
		return mailContent{
			subject: t.subject.Execute(d),
			html:    t.content.Execute(d),
			source:  "template " + string(t.usage),
		}, nil
	}
	c := msg.Content
	if strings.TrimSpace(c.Subject) == "" || (c.HTML == "" && c.Text == "") {
		return mailContent{}, providers.Permanent(p.name, "no_template",
			fmt.Errorf("send mail: no template for %s or Generic, and otpd rendered no subject and body", msg.UsageType))
	}
	m := mailContent{subject: c.Subject, html: c.HTML, source: "otpd templates"}
	if m.html == "" {
		m.text = c.Text
	}
	return m, nil
}

// CanServe returns nil for every usage type otpd sends: a usage type
// without a template of the provider's own is sent with otpd's.
func (p *Provider) CanServe(u otp.UsageType) error { return providers.CheckUsageType(u) }

// Preview returns what Send would ask DirectMail to send, such as
//
//	email from no-reply@dm.example.com ("Acme") subject "Your code is 482915" html 120 bytes (template Generic), region cn-hangzhou via dm.aliyuncs.com
func (p *Provider) Preview(msg otp.Message) (string, error) {
	m, err := p.compose(msg)
	if err != nil {
		return "", err
	}
	from := p.cfg.AccountName
	if p.cfg.FromAlias != "" {
		from += fmt.Sprintf(" (%q)", p.cfg.FromAlias)
	}
	body := fmt.Sprintf("html %d bytes %q", len(m.html), providers.PreviewHTML(m.html, 120))
	if m.html == "" {
		body = fmt.Sprintf("text %q", m.text)
	}
	return fmt.Sprintf("email from %s subject %q %s (%s), region %s via %s",
		from, m.subject, body, m.source, p.settings.region, p.via()), nil
}

// via names the API host, and the scheme when it is not HTTPS.
func (p *Provider) via() string {
	if p.settings.scheme == "https" {
		return p.settings.host
	}
	return p.settings.scheme + "://" + p.settings.host
}

// Describe returns the provider's settings on one line, with the access key
// ID masked and the secret left out.
func (p *Provider) Describe() string {
	var tpls []string
	for _, u := range append(slices.Clone(otp.UsageTypes), otp.OrganizationInvitation) {
		if _, ok := p.settings.templates[u]; ok {
			tpls = append(tpls, string(u))
		}
	}
	own := "none (otpd's own for all)"
	if len(tpls) > 0 {
		own = strings.Join(tpls, " ")
	}
	if p.settings.ignored {
		own += "; ignored (cannot carry the link): OrganizationInvitation"
	}
	alias := "none"
	if p.cfg.FromAlias != "" {
		alias = fmt.Sprintf("%q", p.cfg.FromAlias)
	}
	return fmt.Sprintf("accessKeyId %s, accountName %s, fromAlias %s, region %s, endpoint %s://%s, templates %s",
		redact.Partial(string(p.cfg.AccessKeyID)), p.cfg.AccountName, alias, p.settings.region,
		p.settings.scheme, p.settings.host, own)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
