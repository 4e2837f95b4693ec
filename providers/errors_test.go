package providers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/otpd/otpd/providers"
)

func TestClassifyHTTP(t *testing.T) {
	t.Parallel()
	cause := errors.New("read response")
	for _, tc := range []struct {
		name      string
		status    int
		reason    string
		retryable bool
		want      string
	}{
		{"429 throttled", 429, "", true, "throttled"},
		{"429 keeps provider code", 429, "20429", true, "20429"},
		{"500", 500, "", true, "http_500"},
		{"502", 502, "", true, "http_502"},
		{"503", 503, "", true, "http_503"},
		{"503 keeps provider code", 503, "InternalError", true, "InternalError"},
		{"408 request timeout", 408, "", true, "http_408"},
		{"401 auth", 401, "", false, "auth"},
		{"403 auth", 403, "", false, "auth"},
		{"401 keeps provider code", 401, "20003", false, "20003"},
		{"400", 400, "", false, "http_400"},
		{"400 bad number", 400, "21211", false, "21211"},
		{"404", 404, "", false, "http_404"},
		{"422", 422, "", false, "http_422"},
		{"unexpected redirect", 302, "", false, "http_302"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := providers.ClassifyHTTP("twilio", tc.status, tc.reason, cause)
			if e.Provider != "twilio" || e.Reason != tc.want || e.Retryable != tc.retryable {
				t.Errorf("ClassifyHTTP(%d, %q) = {%q, %q, retryable %v}, want {twilio, %q, retryable %v}",
					tc.status, tc.reason, e.Provider, e.Reason, e.Retryable, tc.want, tc.retryable)
			}
			if !errors.Is(e, cause) {
				t.Errorf("ClassifyHTTP(%d) does not wrap its cause", tc.status)
			}
		})
	}
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassifyTransport(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name   string
		err    error
		reason string
	}{
		{"deadline", context.DeadlineExceeded, "timeout"},
		{"wrapped deadline", fmt.Errorf("post message: %w", context.DeadlineExceeded), "timeout"},
		{"url error with deadline", &url.Error{Op: "Post", URL: "https://api.example.com/x", Err: context.DeadlineExceeded}, "timeout"},
		{"net timeout", &url.Error{Op: "Post", URL: "https://api.example.com/x", Err: timeoutError{}}, "timeout"},
		{"os deadline", os.ErrDeadlineExceeded, "timeout"},
		{"canceled", context.Canceled, "canceled"},
		{"url error canceled", &url.Error{Op: "Post", URL: "https://api.example.com/x", Err: context.Canceled}, "canceled"},
		{"connection refused", &url.Error{Op: "Post", URL: "https://api.example.com/x", Err: refused}, "transport"},
		{"net op error", refused, "transport"},
		{"other", errors.New("tls: handshake failure"), "transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := providers.ClassifyTransport("mailgun", tc.err)
			if e.Provider != "mailgun" || e.Reason != tc.reason || !e.Retryable {
				t.Errorf("ClassifyTransport(%v) = {%q, %q, retryable %v}, want {mailgun, %q, retryable true}",
					tc.err, e.Provider, e.Reason, e.Retryable, tc.reason)
			}
		})
	}
}

func TestClassifyTransportKeepsErrorChain(t *testing.T) {
	t.Parallel()
	e := providers.ClassifyTransport("twilio", &url.Error{Op: "Post", URL: "https://api.example.com/x", Err: context.DeadlineExceeded})
	if !errors.Is(e, context.DeadlineExceeded) {
		t.Errorf("%v does not wrap context.DeadlineExceeded", e)
	}
	inner := providers.Permanent("tencent", "InvalidParameter", nil)
	if got := providers.ClassifyTransport("other", fmt.Errorf("send: %w", inner)); got != inner {
		t.Errorf("ClassifyTransport reclassified an *Error: got %v", got)
	}
}

func TestClassifyTransportDropsURLQuery(t *testing.T) {
	t.Parallel()
	err := &url.Error{
		Op:  "Get",
		URL: "https://user:hunter2@dm.aliyuncs.com/?Action=SingleSendMail&ToAddress=john%40example.com",
		Err: errors.New("connection reset by peer"),
	}
	got := providers.ClassifyTransport("aliyun", err).Error()
	for _, leak := range []string{"john", "hunter2", "ToAddress"} {
		if strings.Contains(got, leak) {
			t.Errorf("error text %q leaks %q", got, leak)
		}
	}
	if !strings.Contains(got, "dm.aliyuncs.com") || !strings.Contains(got, "connection reset by peer") {
		t.Errorf("error text %q lost the host or the cause", got)
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  *providers.Error
		want string
	}{
		{"transient", providers.Transient("twilio", "http_503", errors.New("service unavailable")), "provider twilio: http_503 (transient): service unavailable"},
		{"permanent", providers.Permanent("twilio", "21211", errors.New("invalid To number")), "provider twilio: 21211 (permanent): invalid To number"},
		{"no cause", providers.Permanent("mailgun", "auth", nil), "provider mailgun: auth (permanent)"},
		{"empty reason", providers.Transient("fake", "", nil), "provider fake: unclassified (transient)"},
		{"no provider", providers.Permanent("", "no_provider", providers.ErrNoProvider), "no_provider (permanent): no provider serves this recipient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAsError(t *testing.T) {
	t.Parallel()
	inner := providers.Transient("twilio", "throttled", nil)
	for _, tc := range []struct {
		name string
		err  error
		want *providers.Error
	}{
		{"direct", inner, inner},
		{"wrapped", fmt.Errorf("send: %w", inner), inner},
		{"plain", errors.New("boom"), nil},
		{"nil", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := providers.AsError(tc.err)
			if got != tc.want || ok != (tc.want != nil) {
				t.Errorf("AsError(%v) = %v, %v; want %v", tc.err, got, ok, tc.want)
			}
		})
	}
}
