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
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// Bounds of a hook call.
const (
	// hookMaxBodyBytes bounds a hook's request body: Logto's is well
	// under 1 KiB, its email context (application, organization, user
	// with branding and profile) a few KiB; Supabase's carries the whole
	// user (identities, metadata) and its client allows 200 KiB.
	hookMaxBodyBytes = 256 << 10
	// defaultHookTimeout is the service's default send_timeout, for a
	// Hooks without SendTimeout.
	defaultHookTimeout = 15 * time.Second
)

// deliverer makes a hook's DeliverCode call in process, through the API
// handler (the transcoder in front of grpc.Server.ServeHTTP), so that the
// call runs every interceptor of the gRPC server as any Connect call does:
// caller auth, metrics and the call log (with the hook as entry), malformed
// request handling, then the service's limits, templates, routing and
// failover.
type deliverer struct {
	client  *connect.Client[otpv1.DeliverCodeRequest, otpv1.DeliverCodeResponse]
	entry   string
	timeout time.Duration
}

func newDeliverer(rpc http.Handler, entry string, timeout time.Duration) deliverer {
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	hc := &http.Client{Transport: inProcess{rpc}}
	return deliverer{
		client:  connect.NewClient[otpv1.DeliverCodeRequest, otpv1.DeliverCodeResponse](hc, "http://otpd.in-process"+otpv1.OtpService_DeliverCode_FullMethodName),
		entry:   entry,
		timeout: timeout,
	}
}

// deliver calls DeliverCode with msg for the hook request r. ctx is r's,
// or one derived from it (with a vouched caller); header is added to the
// call's (Authorization).
func (d deliverer) deliver(ctx context.Context, r *http.Request, msg *otpv1.DeliverCodeRequest, header http.Header) (*otpv1.DeliverCodeResponse, error) {
	req := connect.NewRequest(msg)
	for k, vs := range header {
		for _, v := range vs {
			req.Header().Add(k, v)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, apiCallKey{}, &apiCall{entry: d.entry})
	ctx = context.WithValue(ctx, origRequestKey{}, r)
	resp, err := d.client.CallUnary(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// refused makes the call of a request that the hook itself refuses: with
// no usage type (invalid, so nothing is looked up or sent), so that caller
// auth comes first and the refusal is counted and logged as any call. It
// returns the call's error when that is a refusal of the caller
// (UNAUTHENTICATED, PERMISSION_DENIED), which the hook answers instead.
func (d deliverer) refused(ctx context.Context, r *http.Request, ch otpv1.Channel, header http.Header) error {
	_, err := d.deliver(ctx, r, &otpv1.DeliverCodeRequest{Channel: ch}, header)
	if c := connect.CodeOf(err); c == connect.CodeUnauthenticated || c == connect.CodePermissionDenied {
		return err
	}
	return nil
}

// hookRefusal is the answer to a request that a hook itself refuses.
type hookRefusal struct {
	status int
	msg    string
}

// ipFilter holds the addresses whose requests are a backend's, not an end
// user's (hooks.*.ignore_ips).
type ipFilter []netip.Prefix

// clientIP is ip as client_ip, or "" when it is one of f. An address that
// does not parse goes on as it is, for DeliverCode to refuse.
func (f ipFilter) clientIP(ip string) string {
	if ip == "" {
		return ""
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	for _, p := range f {
		if p.Contains(a) {
			return ""
		}
	}
	return ip
}

// hookError turns a DeliverCode error into a hook's answer: an HTTP
// status, the Retry-After seconds (0: none) and a sentence the identity
// server can show its user, naming a bad field as the hook's request does
// (field). Never the code, the recipient or a provider's text.
func hookError(err error, field func(string) string) (status, retryAfter int, msg string) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return http.StatusInternalServerError, 0, "Delivery failed. Try again later."
	}
	var retry time.Duration
	var bad, desc, reason string
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		switch v := v.(type) {
		case *errdetails.RetryInfo:
			retry = v.GetRetryDelay().AsDuration()
		case *errdetails.ErrorInfo:
			reason = v.GetReason()
		case *errdetails.BadRequest:
			if fv := v.GetFieldViolations(); len(fv) > 0 && bad == "" {
				bad, desc = fv[0].GetField(), fv[0].GetDescription()
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
		if bad == "" {
			return http.StatusBadRequest, 0, "Invalid request."
		}
		return http.StatusBadRequest, 0, field(bad) + " " + desc + "."
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized, 0, "Unauthorized."
	case connect.CodePermissionDenied:
		if reason == "DESTINATION_BLOCKED" {
			// A fraud rule: the user can only try another number.
			return http.StatusForbidden, 0, "Codes cannot be sent to this number."
		}
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

// writeJSON writes v as a JSON answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// Identity servers show these messages as they are: "<token>", not
	// "\u003ctoken\u003e". The body is JSON, never HTML.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// origRequestKey carries the hook's HTTP request to inProcess.
type origRequestKey struct{}

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
