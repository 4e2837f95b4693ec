// Package tencent sends codes by SMS through Tencent Cloud SMS (API SendSms,
// version 2021-01-11), as Logto's Tencent connector does: the message is an
// approved template of the SMS console whose single placeholder {1}
// receives the code. Tencent never sends otpd's own text, so a provider
// serves only the usage types it has a template for, or all of them with a
// Generic one.
package tencent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	sms "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/sms/v20210111"

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

// Provider sends codes through Tencent Cloud SMS. It is safe for concurrent
// use.
type Provider struct {
	name      string
	cfg       Config
	endpoint  string                   // scheme://host[:port], for Describe
	templates map[otp.UsageType]string // template IDs by usage type
	client    *sms.Client
	secrets   []string // what Scrub removes from Tencent's error text
}

// New returns a Tencent Cloud SMS provider called name. It builds one SDK
// client, with a transport of its own, that every Send shares.
func New(name string, cfg Config) (*Provider, error) {
	if name == "" {
		return nil, errors.New("create tencent provider: name is empty")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("create tencent provider %q: %w", name, err)
	}
	templates, _ := cfg.templatesByUsage() // Validate checked them
	host, plainHTTP, _ := endpointHost(cfg.Endpoint)

	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Endpoint = host
	cpf.HttpProfile.Scheme = "HTTPS"
	if plainHTTP {
		cpf.HttpProfile.Scheme = "HTTP"
	}
	cpf.HttpProfile.ReqMethod = http.MethodPost
	// The Router is the only place that retries. Both retry loops of the
	// SDK default to off; say so rather than rely on it. (Its network retry
	// only ever applies to requests with a ClientToken, which SendSms has
	// not.)
	cpf.NetworkFailureMaxRetries = 0
	cpf.RateLimitExceededMaxRetries = 0
	// The region breaker would send requests to a backup domain, not the
	// configured endpoint, once it trips.
	cpf.DisableRegionBreaker = true
	// English error messages, for operators reading logs.
	cpf.Language = "en-US"

	client, err := sms.NewClient(common.NewCredential(string(cfg.AccessKeyID), cfg.AccessKeySecret.Reveal()), cfg.Region, cpf)
	if err != nil {
		return nil, fmt.Errorf("create tencent provider %q: %w", name, err)
	}
	// WithHttpTransport sets the transport of the client's own
	// *http.Client, which is a fresh one unless some code set
	// common.DefaultHttpClient; otpd never does.
	client.WithHttpTransport(providers.NewTransport())

	scheme := "https"
	if plainHTTP {
		scheme = "http"
	}
	return &Provider{
		name:      name,
		cfg:       cfg,
		endpoint:  scheme + "://" + host,
		templates: templates,
		client:    client,
		secrets:   []string{cfg.AccessKeySecret.Reveal(), string(cfg.AccessKeyID)},
	}, nil
}

// Send sends msg's code with the approved template for its usage type, or
// the Generic one; an OrganizationInvitation sends its link with the
// OrganizationInvitation template, and has no Generic fallback. The SDK honours ctx, whose deadline bounds the whole
// call. A Tencent error code becomes the error's Reason.
func (p *Provider) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	templateID, err := p.template(msg)
	if err != nil {
		return otp.Receipt{}, err
	}
	if err := ctx.Err(); err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, err)
	}
	// A new request every time: the SDK writes the call's parameters,
	// timestamp and context into the request it is given.
	req := sms.NewSendSmsRequest()
	req.PhoneNumberSet = common.StringPtrs([]string{msg.To})
	req.SmsSdkAppId = common.StringPtr(p.cfg.SDKAppID)
	req.SignName = common.StringPtr(p.cfg.SignName)
	req.TemplateId = common.StringPtr(templateID)
	req.TemplateParamSet = common.StringPtrs(params(msg))

	resp, err := p.client.SendSmsWithContext(ctx, req)
	if err != nil {
		return otp.Receipt{}, p.classify(ctx, msg, err)
	}
	return p.receipt(msg, resp)
}

// receipt checks a SendSms answer that is not an error: Tencent reports a
// failure for a number inside it, with the call itself succeeding.
func (p *Provider) receipt(msg otp.Message, resp *sms.SendSmsResponse) (otp.Receipt, error) {
	if resp == nil || resp.Response == nil || len(resp.Response.SendStatusSet) == 0 {
		return otp.Receipt{}, p.badResponse("response has no SendStatusSet")
	}
	requestID := deref(resp.Response.RequestId)
	serialNo := ""
	for _, st := range resp.Response.SendStatusSet {
		if st == nil || deref(st.Code) == "" {
			return otp.Receipt{}, p.badResponse("SendStatusSet entry has no Code")
		}
		if code := deref(st.Code); code != "Ok" {
			return otp.Receipt{}, p.vendorError(msg, code, deref(st.Message), requestID)
		}
		if serialNo == "" {
			serialNo = deref(st.SerialNo)
		}
	}
	if serialNo == "" {
		return otp.Receipt{}, p.badResponse("SendStatusSet says Ok but has no SerialNo")
	}
	return otp.Receipt{Provider: p.name, MessageID: serialNo}, nil
}

// badResponse is an answer that is neither a success nor a Tencent error,
// as a proxy might give. It is transient: the code is the same whichever
// provider delivers it, so failing over costs at worst a second SMS with the
// same code, whereas a permanent failure would lose the code.
func (p *Provider) badResponse(what string) *providers.Error {
	return providers.Transient(p.name, "bad_response", fmt.Errorf("send sms: %s", what))
}

// classify turns an error of SendSmsWithContext into a *providers.Error.
func (p *Provider) classify(ctx context.Context, msg otp.Message, err error) *providers.Error {
	var sdkErr *tcerr.TencentCloudSDKError
	if !errors.As(err, &sdkErr) {
		// Plumbing of the SDK (building the request, decompressing the
		// answer): nothing Tencent said about the message.
		if ctxErr := ctx.Err(); ctxErr != nil {
			return providers.ClassifyTransport(p.name, ctxErr)
		}
		return providers.ClassifyTransport(p.name, err)
	}
	if !strings.HasPrefix(sdkErr.Code, "ClientError.") {
		return p.vendorError(msg, sdkErr.Code, sdkErr.Message, sdkErr.RequestId)
	}

	// ClientError.* are the SDK's own: the call got no usable answer. A
	// context that ended explains any of them, including a body cut short
	// (which the SDK reports as ClientError.ParseJsonError).
	if ctxErr := ctx.Err(); ctxErr != nil {
		return providers.ClassifyTransport(p.name, ctxErr)
	}
	switch sdkErr.Code {
	case "ClientError.NetworkError":
		if cause := errors.Unwrap(sdkErr); cause != nil {
			return providers.ClassifyTransport(p.name, cause)
		}
		return providers.Transient(p.name, "transport", errors.New("send sms: no response"))
	case "ClientError.HttpStatusCodeError":
		// A non-200 answer whose JSON body holds no Tencent error. The SDK
		// puts the status, and the body, in its message only.
		var status int
		if _, err := fmt.Sscanf(sdkErr.Message, "Request fail with http status code: %d", &status); err == nil {
			return providers.ClassifyHTTP(p.name, status, "", fmt.Errorf("send sms: HTTP status %d without a Tencent error", status))
		}
		return providers.Transient(p.name, sdkErr.Code, errors.New("send sms: unexpected HTTP status"))
	case "ClientError.ParseJsonError":
		// Typically a gateway's HTML error page. The SDK quotes the whole
		// body in its message; it is left out.
		return providers.Transient(p.name, sdkErr.Code, errors.New("send sms: response is not Tencent Cloud API JSON"))
	default:
		return providers.Transient(p.name, sdkErr.Code, fmt.Errorf("send sms: tencent sdk failed: %s", sdkErr.Code))
	}
}

// vendorError is a failure Tencent reported, for the whole request or for
// the number, with its code as Reason.
func (p *Provider) vendorError(msg otp.Message, code, message, requestID string) *providers.Error {
	err := fmt.Errorf("send sms: tencent %s: %s (request %s)", code, providers.Scrub(message, msg, p.secrets...), orNone(requestID))
	if retryable(code) {
		return providers.Transient(p.name, code, err)
	}
	return providers.Permanent(p.name, code, err)
}

// retryable reports whether a Tencent error code is worth failing over.
func retryable(code string) bool {
	switch {
	case strings.HasPrefix(code, "RequestLimitExceeded"):
		// The account's API call rate: another provider is not limited by
		// it.
		return true
	case strings.HasPrefix(code, "InternalError"):
		return true
	case strings.HasPrefix(code, "LimitExceeded."):
		// Frequency limits per number or per app (PhoneNumberDailyLimit,
		// PhoneNumberThirtySecondLimit, ...). They are anti-abuse limits:
		// failing over to another provider would defeat them.
		return false
	case strings.HasPrefix(code, "FailedOperation."), // unapproved template or signature, no balance, blacklisted number
		strings.HasPrefix(code, "AuthFailure."),
		strings.HasPrefix(code, "UnauthorizedOperation."),
		strings.HasPrefix(code, "InvalidParameter"), // InvalidParameter.*, InvalidParameterValue.* (IncorrectPhoneNumber)
		strings.HasPrefix(code, "MissingParameter"),
		strings.HasPrefix(code, "UnsupportedOperation."):
		return false
	default:
		// An unknown code is a failure nobody can tell to be temporary.
		return false
	}
}

// template returns the template ID for msg, or a permanent error when the
// provider cannot serve it.
func (p *Provider) template(msg otp.Message) (string, error) {
	if msg.Channel != otp.SMS {
		return "", providers.Permanent(p.name, "unsupported_channel",
			fmt.Errorf("send %s: tencent sends SMS only", msg.Channel))
	}
	id, ok := providers.PickTemplate(p.templates, msg.UsageType)
	if !ok {
		return "", providers.Permanent(p.name, "no_template", p.noTemplate(msg.UsageType))
	}
	return id, nil
}

func (p *Provider) noTemplate(u otp.UsageType) error {
	if u == otp.OrganizationInvitation {
		return fmt.Errorf("tencent needs a templateCode for %s, whose {1} receives the link: it sends only templates approved in its console", u)
	}
	return fmt.Errorf("tencent needs a templateCode for %s or Generic: it sends only templates approved in its console", u)
}

// params are the template's parameters: {1} is the code, or the link of
// an OrganizationInvitation.
func params(msg otp.Message) []string {
	if msg.UsageType == otp.OrganizationInvitation {
		return []string{msg.Link}
	}
	return []string{msg.Code}
}

// CanServe returns nil when the provider has a template for u or a Generic
// one (for OrganizationInvitation, a template of its own), and an error
// otherwise: Tencent cannot send otpd's own text, and the Router skips it
// for what it cannot serve.
func (p *Provider) CanServe(u otp.UsageType) error {
	if _, ok := providers.PickTemplate(p.templates, u); !ok {
		return p.noTemplate(u)
	}
	return nil
}

// Preview returns what Send would ask Tencent to send, such as
//
//	sms template 1234567 sign "Acme" app 1400000000 region ap-guangzhou params ["482915"]
func (p *Provider) Preview(msg otp.Message) (string, error) {
	templateID, err := p.template(msg)
	if err != nil {
		return "", err
	}
	params, _ := json.Marshal(params(msg))
	return fmt.Sprintf("sms template %s sign %q app %s region %s params %s",
		templateID, p.cfg.SignName, p.cfg.SDKAppID, p.cfg.Region, params), nil
}

// Describe returns the provider's settings on one line, with the access key
// ID masked and the secret left out.
func (p *Provider) Describe() string {
	var tpls []string
	for _, u := range append(slices.Clone(otp.UsageTypes), otp.OrganizationInvitation) {
		if id, ok := p.templates[u]; ok {
			tpls = append(tpls, string(u)+"="+id)
		}
	}
	return fmt.Sprintf("accessKeyId %s, signName %q, sdkAppId %s, region %s, endpoint %s, templates %s",
		redact.Partial(string(p.cfg.AccessKeyID)), p.cfg.SignName, p.cfg.SDKAppID, p.cfg.Region, p.endpoint,
		strings.Join(tpls, " "))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
