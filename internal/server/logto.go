package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/text/language"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// The paths of Logto's HTTP connectors' endpoint on listen.api.
const (
	logtoSMSPath   = "/hooks/logto/sms"
	logtoEmailPath = "/hooks/logto/email"
)

// Bounds of a hook call.
const (
	// hookMaxBodyBytes bounds a hook's request body: Logto's is well
	// under 1 KiB, its email context (application, organization, user
	// with branding and profile) a few KiB.
	hookMaxBodyBytes = 64 << 10
	// defaultHookTimeout is the service's default send_timeout, for a
	// Hooks without SendTimeout.
	defaultHookTimeout = 15 * time.Second
)

// logtoTypes maps Logto's TemplateType to otpd's usage types: the eight
// types that carry a code. OrganizationInvitation carries a link.
var logtoTypes = map[string]otpv1.UsageType{
	"SignIn":                   otpv1.UsageType_USAGE_TYPE_SIGN_IN,
	"Register":                 otpv1.UsageType_USAGE_TYPE_REGISTER,
	"ForgotPassword":           otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD,
	"Generic":                  otpv1.UsageType_USAGE_TYPE_GENERIC,
	"UserPermissionValidation": otpv1.UsageType_USAGE_TYPE_USER_PERMISSION_VALIDATION,
	"BindNewIdentifier":        otpv1.UsageType_USAGE_TYPE_BIND_NEW_IDENTIFIER,
	"MfaVerification":          otpv1.UsageType_USAGE_TYPE_MFA_VERIFICATION,
	"BindMfa":                  otpv1.UsageType_USAGE_TYPE_BIND_MFA,
}

// logtoRequest is the body of Logto's @logto/connector-http-sms and
// @logto/connector-http-email (SendMessageData). Other payload keys
// (application, organization, user, link) are ignored.
type logtoRequest struct {
	To      string `json:"to"`
	Type    string `json:"type"`
	Payload struct {
		Code      string `json:"code"`
		Locale    string `json:"locale"`
		UILocales string `json:"uiLocales"`
	} `json:"payload"`
	IP string `json:"ip"`
}

// logtoHook serves POST /hooks/logto/{sms,email}: it turns Logto's request
// into a DeliverCode call made in process through the API handler (the
// transcoder in front of grpc.Server.ServeHTTP), so that the call runs
// every interceptor of the gRPC server as any Connect call does: caller
// auth with the request's Authorization header (and its TLS client
// certificate), metrics and the call log (entry "logto"), malformed
// request handling, then the service's limits, templates, routing and
// failover. Its answers are what Logto shows the user: short sentences,
// never the code or a provider's text.
type logtoHook struct {
	client  *connect.Client[otpv1.DeliverCodeRequest, otpv1.DeliverCodeResponse]
	ignore  []netip.Prefix
	timeout time.Duration
}

func newLogtoHook(rpc http.Handler, hooks Hooks) *logtoHook {
	timeout := hooks.SendTimeout
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	hc := &http.Client{Transport: inProcess{rpc}}
	return &logtoHook{
		client:  connect.NewClient[otpv1.DeliverCodeRequest, otpv1.DeliverCodeResponse](hc, "http://otpd.in-process"+otpv1.OtpService_DeliverCode_FullMethodName),
		ignore:  hooks.Logto.ignored(),
		timeout: timeout,
	}
}

// origRequestKey carries the hook's HTTP request to inProcess.
type origRequestKey struct{}

func (h *logtoHook) handler(ch otpv1.Channel) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			hookAnswer(w, http.StatusMethodNotAllowed, "Use POST.")
			return
		}
		msg, refusal := h.parse(r, w, ch)
		if refusal != nil {
			// Refused by the hook itself; the call still goes through
			// the gRPC server, with no usage type (invalid, so nothing
			// is looked up or sent), so that caller auth comes first and
			// the refusal is counted and logged as any call.
			msg = &otpv1.DeliverCodeRequest{Channel: ch}
		}
		req := connect.NewRequest(msg)
		for _, v := range r.Header.Values("Authorization") {
			req.Header().Add("Authorization", v)
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
		defer cancel()
		ctx = context.WithValue(ctx, apiCallKey{}, &apiCall{entry: entryLogto})
		ctx = context.WithValue(ctx, origRequestKey{}, r)
		resp, err := h.client.CallUnary(ctx, req)
		if refusal != nil && connect.CodeOf(err) != connect.CodeUnauthenticated && connect.CodeOf(err) != connect.CodePermissionDenied {
			hookAnswer(w, refusal.status, refusal.msg)
			return
		}
		if err != nil {
			status, retry, msg := logtoError(err)
			if retry > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(retry))
			}
			hookAnswer(w, status, msg)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(struct {
			VerificationID string `json:"verification_id"`
			Provider       string `json:"provider"`
		}{resp.Msg.GetVerificationId(), resp.Msg.GetProvider()})
	})
}

// hookRefusal is the answer to a request that the hook itself refuses.
type hookRefusal struct {
	status int
	msg    string
}

// parse reads Logto's request into the DeliverCode request, or refuses it.
func (h *logtoHook) parse(r *http.Request, w http.ResponseWriter, ch otpv1.Channel) (*otpv1.DeliverCodeRequest, *hookRefusal) {
	var body logtoRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, hookMaxBodyBytes))
	if err := dec.Decode(&body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &hookRefusal{http.StatusRequestEntityTooLarge, "The request is too large."}
		}
		return nil, &hookRefusal{http.StatusBadRequest, "The request is not the JSON of Logto's HTTP connector."}
	}
	if body.Type == "OrganizationInvitation" {
		return nil, &hookRefusal{http.StatusUnprocessableEntity, "Invitation links are not delivered by otpd: use another connector for organization invitations."}
	}
	usage, ok := logtoTypes[body.Type]
	if !ok {
		return nil, &hookRefusal{http.StatusBadRequest, "Unknown message type."}
	}
	to := body.To
	if ch == otpv1.Channel_CHANNEL_SMS && to != "" && !strings.HasPrefix(to, "+") {
		to = "+" + to // Logto's phone numbers are digits only
	}
	return &otpv1.DeliverCodeRequest{
		Recipient: to,
		Channel:   ch,
		UsageType: usage,
		Locale:    logtoLocale(body.Payload.Locale, body.Payload.UILocales),
		ClientIp:  h.clientIP(body.IP),
		Code:      body.Payload.Code,
	}, nil
}

// clientIP is Logto's ip as client_ip, or "" when it is one of
// hooks.logto.ignore_ips (a backend, not an end user). An address that
// does not parse goes on as it is, for DeliverCode to refuse.
func (h *logtoHook) clientIP(ip string) string {
	if ip == "" {
		return ""
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	for _, p := range h.ignore {
		if p.Contains(a) {
			return ""
		}
	}
	return ip
}

// logtoLocale is payload.locale, else the first well-formed tag of
// payload.uiLocales (OIDC ui_locales: space-separated), else "" (otpd's
// default locale).
func logtoLocale(locale, uiLocales string) string {
	if locale != "" {
		return locale
	}
	for _, tag := range strings.Fields(uiLocales) {
		if _, err := language.Parse(tag); err == nil {
			return tag
		}
	}
	return ""
}

// logtoError turns a DeliverCode error into the hook's answer: a status,
// the Retry-After seconds (0: none) and a sentence Logto can show its user.
// Never the code, the recipient or a provider's text.
func logtoError(err error) (status, retryAfter int, msg string) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return http.StatusInternalServerError, 0, "Delivery failed. Try again later."
	}
	var retry time.Duration
	var field, desc string
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		switch v := v.(type) {
		case *errdetails.RetryInfo:
			retry = v.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			if fv := v.GetFieldViolations(); len(fv) > 0 && field == "" {
				field, desc = fv[0].GetField(), fv[0].GetDescription()
			}
		}
	}
	secs := 0
	if retry > 0 {
		secs = int(math.Ceil(retry.Seconds()))
	}
	switch ce.Code() {
	case connect.CodeResourceExhausted:
		if secs > 0 {
			return http.StatusTooManyRequests, secs, "Too many codes. Try again in " + strconv.Itoa(secs) + " seconds."
		}
		return http.StatusTooManyRequests, 0, "Too many codes. Try again later."
	case connect.CodeInvalidArgument:
		if field == "" {
			return http.StatusBadRequest, 0, "Invalid request."
		}
		return http.StatusBadRequest, 0, logtoField(field) + " " + desc + "."
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized, 0, "Unauthorized: the connector's authorization must be \"Bearer <token>\" with a token otpd accepts."
	case connect.CodePermissionDenied:
		return http.StatusForbidden, 0, "Forbidden."
	case connect.CodeFailedPrecondition:
		return http.StatusUnprocessableEntity, 0, "This message cannot be delivered to this recipient."
	case connect.CodeUnavailable, connect.CodeAborted:
		if secs == 0 {
			secs = 1
		}
		return http.StatusServiceUnavailable, secs, "The message service is unavailable. Try again in " + strconv.Itoa(secs) + " seconds."
	case connect.CodeDeadlineExceeded, connect.CodeCanceled:
		return http.StatusServiceUnavailable, 1, "The message could not be sent in time. Try again."
	}
	return http.StatusInternalServerError, 0, "Delivery failed. Try again later."
}

// logtoField names a DeliverCodeRequest field as Logto's request does.
func logtoField(field string) string {
	switch field {
	case "recipient":
		return "to"
	case "code":
		return "payload.code"
	case "locale":
		return "payload.locale"
	case "client_ip":
		return "ip"
	case "usage_type":
		return "type"
	}
	return field
}

// hookAnswer writes {"message": msg}, the body Logto shows its user.
func hookAnswer(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{msg})
}

// inProcess is the HTTP transport of a hook's DeliverCode call: the
// request is served by the API handler in this process, with the hook
// request's peer address and TLS state (for mTLS), and never touches the
// network.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if orig, ok := req.Context().Value(origRequestKey{}).(*http.Request); ok {
		r.RemoteAddr, r.TLS = orig.RemoteAddr, orig.TLS
	}
	r.RequestURI = r.URL.RequestURI()
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status:        strconv.Itoa(rec.status) + " " + http.StatusText(rec.status),
		StatusCode:    rec.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()),
		Trailer:       http.Header{},
		Request:       req,
	}, nil
}

// recorder is the http.ResponseWriter of an in-process call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

func (w *recorder) Flush() {}
