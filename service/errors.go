package service

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
)

// errorDomain is the google.rpc.ErrorInfo domain of otpd's errors.
const errorDomain = "otpd"

// violations collects bad-input findings for a BadRequest.
type violations struct {
	list []*errdetails.BadRequest_FieldViolation
}

func (v *violations) add(field, desc string) {
	v.list = append(v.list, &errdetails.BadRequest_FieldViolation{Field: field, Description: desc})
}

func (v *violations) err() error {
	if len(v.list) == 0 {
		return nil
	}
	return &invalidError{v.list}
}

type invalidError struct {
	list []*errdetails.BadRequest_FieldViolation
}

func (e *invalidError) Error() string {
	s := "invalid request: " + e.list[0].Field + " " + e.list[0].Description
	if len(e.list) > 1 {
		s += " (and " + strconv.Itoa(len(e.list)-1) + " more)"
	}
	return s
}

// rateLimitError is a limit that refused a call.
type rateLimitError struct {
	limit      string
	retryAfter time.Duration
}

func (e *rateLimitError) Error() string {
	return "rate limited by " + e.limit + ", retry after " + e.retryAfter.Round(time.Millisecond).String()
}

// storeError is a store failure on a call's path. Whatever the store said
// (refused, timed out, full, an unexpected reply), the caller gets
// UNAVAILABLE with RetryInfo: the store failed, not the request, and the
// service left nothing behind that a retry would trip over.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// storeErr is the error a call returns for a failed store step: the
// caller's cancellation as such, anything else as a storeError.
func storeErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return context.Canceled
	}
	return &storeError{err}
}

// noTemplateError is a message that no template renders: an invitation
// on a channel and locale for which the operator wrote none. It is
// errNoTemplate, with the files to add.
type noTemplateError struct {
	channel otp.Channel
	usage   otp.UsageType
	locale  string
}

func (e *noTemplateError) Error() string {
	files := string(e.channel) + "/<locale>/" + string(e.usage) + ".txt"
	if e.channel == otp.Email {
		files = string(e.channel) + "/<locale>/" + string(e.usage) + ".subject and .html or .txt"
	}
	return "no " + string(e.channel) + " template for " + string(e.usage) + " in locale " + e.locale +
		" or the default locale: add " + files + " to templates.dir"
}

func (e *noTemplateError) Is(target error) bool { return target == errNoTemplate }

// Errors with a fixed answer.
var (
	errInProgress = errors.New("a send with this idempotency key is still in progress")
	errNoTemplate = errors.New("no template can render this message")
	errNoProvider = providers.Permanent("", "no_provider", providers.ErrNoProvider)
)

// toStatus is the one place where a domain error becomes a gRPC status. It
// never lets provider text or personal data through to the client.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var (
		inv  *invalidError
		rl   *rateLimitError
		fe   *fraudError
		lc   *lowConversionError
		perr *providers.Error
		serr *storeError
	)
	switch {
	case errors.As(err, &inv):
		return withDetails(codes.InvalidArgument, inv.Error(), &errdetails.BadRequest{FieldViolations: inv.list})
	case errors.As(err, &rl):
		return withDetails(codes.ResourceExhausted, rl.Error(),
			&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: errorDomain, Metadata: map[string]string{"limit": rl.limit}},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(roundUp(rl.retryAfter))},
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: rl.limit, Description: "limit " + rl.limit + " reached"}}},
		)
	case errors.As(err, &lc):
		subject := "country_code"
		if lc.subject == conversionIP {
			subject = "client_ip"
		}
		return withDetails(codes.ResourceExhausted, "too few codes sent to this "+strings.ReplaceAll(subject, "_", " ")+" are verified; try again later (fraud rule conversion)",
			&errdetails.ErrorInfo{Reason: "LOW_CONVERSION", Domain: errorDomain, Metadata: map[string]string{"rule": ruleConversion, "subject": subject}},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(roundUp(lc.retryAfter))},
		)
	case errors.As(err, &fe):
		return withDetails(codes.PermissionDenied, "codes cannot be sent to this destination (fraud rule "+fe.rule+")",
			&errdetails.ErrorInfo{Reason: "DESTINATION_BLOCKED", Domain: errorDomain, Metadata: map[string]string{"rule": fe.rule}})
	case errors.Is(err, errInProgress):
		return withDetails(codes.Aborted, err.Error(),
			&errdetails.ErrorInfo{Reason: "IDEMPOTENT_SEND_IN_PROGRESS", Domain: errorDomain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	case errors.Is(err, errNoTemplate):
		msg, info := errNoTemplate.Error(), &errdetails.ErrorInfo{Reason: "NO_TEMPLATE", Domain: errorDomain}
		var nt *noTemplateError
		if errors.As(err, &nt) {
			msg = nt.Error()
			info.Metadata = map[string]string{"channel": string(nt.channel), "usage_type": string(nt.usage)}
		}
		return withDetails(codes.FailedPrecondition, msg, info)
	case errors.As(err, &perr):
		if errors.Is(perr, providers.ErrNoProvider) {
			return withDetails(codes.FailedPrecondition, "no provider is configured for this recipient",
				&errdetails.ErrorInfo{Reason: "NO_PROVIDER", Domain: errorDomain})
		}
		info := &errdetails.ErrorInfo{Domain: errorDomain, Metadata: map[string]string{"provider": perr.Provider, "provider_reason": perr.Reason}}
		if perr.Retryable {
			info.Reason = "PROVIDERS_UNAVAILABLE"
			return withDetails(codes.Unavailable, "every provider for the channel failed; try again later", info,
				&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
		}
		info.Reason = "PROVIDER_REJECTED"
		return withDetails(codes.FailedPrecondition, "provider "+perr.Provider+" rejected the message permanently ("+perr.Reason+")", info)
	// Before the context's errors: a store step that ran out of time is
	// an unavailable store, which RetryInfo tells the caller to try again.
	case errors.As(err, &serr) || errors.Is(err, ErrStoreUnavailable):
		return storeUnavailable()
	// After provider errors: a provider attempt that timed out on its own
	// timeout is an unavailable provider, not the caller's deadline (the
	// service returns the context's error itself when that is what ended
	// the call).
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded before the code was delivered")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "call canceled")
	}
	return status.Error(codes.Internal, "internal error")
}

func storeUnavailable() error {
	return withDetails(codes.Unavailable, "store unavailable; try again later",
		&errdetails.ErrorInfo{Reason: "STORE_UNAVAILABLE", Domain: errorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
}

func withDetails(c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(c, msg)
	if withD, err := st.WithDetails(details...); err == nil {
		st = withD
	}
	return st.Err()
}

// roundUp rounds a retry delay up to whole milliseconds, at least 1 ms, so
// that a client waiting that long is never early.
func roundUp(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}
