// Package service is otpd's domain: the OtpService gRPC handlers, code
// generation and keyed hashing, the rate limits, and the Store contract that
// the Redis and in-memory stores implement.
//
// A code is checked in Service.VerifyCode; the check-and-update itself runs
// atomically inside the Store (a Lua script in Redis).
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/otpd/otpd/internal/redact"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

// Sender delivers a message through the configured providers, failing over
// between them (providers.Router).
type Sender interface {
	// Serves reports whether any provider serves the recipient, so that a
	// send nobody can deliver is refused before it counts anywhere.
	Serves(ch providers.Channel, to string) bool
	Send(ctx context.Context, msg providers.Message) (providers.Receipt, error)
}

// Renderer renders otpd's own templates (templates.Renderer).
type Renderer interface {
	MatchLocale(tag string) (string, error)
	Render(ch providers.Channel, locale string, u providers.UsageType, d templates.Data) (providers.Content, error)
}

// Config holds the code rules and limits. DefaultConfig gives the defaults.
type Config struct {
	// Secret keys every hash otpd stores; at least 32 bytes.
	Secret []byte
	// CodeLength is the number of digits of a code, 4 to 10 (6).
	CodeLength int
	// CodeTTL is how long a code stays valid (10m).
	CodeTTL time.Duration
	// MaxAttempts is how many wrong verifications kill a code (5).
	MaxAttempts int
	// ResendInterval is the cooldown per recipient and usage type (60s); 0
	// disables it.
	ResendInterval time.Duration
	// PerRecipient limits sends per recipient (5 per 10m).
	PerRecipient Window
	// PerIP limits sends per client IP, when the caller gives one (20 per 1h).
	PerIP Window
	// PerCountry limits SMS sends per country calling code (1000 per 1h).
	PerCountry Window
	// VerifyPerRecipient limits wrong verifications per recipient across
	// codes (20 per 1h).
	VerifyPerRecipient Window
	// SendTimeout bounds a SendCode call when the caller's deadline is later
	// or absent (15s).
	SendTimeout time.Duration
	// IdempotencyTTL is how long the answer to an idempotent send is kept
	// (24h).
	IdempotencyTTL time.Duration
	// AppName is inserted as {{app_name}} ("otpd").
	AppName string
}

// DefaultConfig returns the documented defaults, without a secret.
func DefaultConfig() Config {
	return Config{
		CodeLength:         6,
		CodeTTL:            10 * time.Minute,
		MaxAttempts:        5,
		ResendInterval:     60 * time.Second,
		PerRecipient:       Window{Count: 5, Window: 10 * time.Minute},
		PerIP:              Window{Count: 20, Window: time.Hour},
		PerCountry:         Window{Count: 1000, Window: time.Hour},
		VerifyPerRecipient: Window{Count: 20, Window: time.Hour},
		SendTimeout:        15 * time.Second,
		IdempotencyTTL:     24 * time.Hour,
		AppName:            "otpd",
	}
}

// Validate checks the rules; errors name the configuration key.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, key, msg string) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s", key, msg))
		}
	}
	check(len(c.Secret) >= MinSecretLen, "secret", "must be at least 32 bytes")
	check(c.CodeLength >= 4 && c.CodeLength <= 10, "code.length", "must be between 4 and 10")
	check(c.CodeTTL >= time.Second, "code.ttl", "must be at least 1s")
	check(c.MaxAttempts >= 1 && c.MaxAttempts <= 100, "code.max_attempts", "must be between 1 and 100")
	check(c.ResendInterval >= 0, "limits.resend_interval", "must not be negative")
	for key, w := range map[string]Window{
		"limits.per_recipient": c.PerRecipient, "limits.per_ip": c.PerIP,
		"limits.per_country": c.PerCountry, "limits.verify_per_recipient": c.VerifyPerRecipient,
	} {
		check(w.Count >= 0, key+".count", "must not be negative (0 disables the limit)")
		check(w.Count == 0 || w.Window >= time.Second, key+".window", "must be at least 1s")
	}
	check(c.SendTimeout >= 100*time.Millisecond, "send_timeout", "must be at least 100ms")
	check(c.IdempotencyTTL >= time.Minute, "idempotency_ttl", "must be at least 1m")
	return errors.Join(errs...)
}

// Option configures a Service.
type Option func(*Service)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithRegisterer registers the service's metrics (default: a private
// registry).
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Service) { s.reg = r } }

// Service implements otp.v1.OtpService.
type Service struct {
	otpv1.UnimplementedOtpServiceServer

	cfg      Config
	store    Store
	sender   Sender
	renderer Renderer
	keys     *keyring
	phones   *phoneCache
	now      func() time.Time
	log      *slog.Logger
	reg      prometheus.Registerer
	metrics  *metrics
}

var _ otpv1.OtpServiceServer = (*Service)(nil)

// New returns a Service. cfg must pass Validate.
func New(cfg Config, store Store, sender Sender, renderer Renderer, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := newKeyring(cfg.Secret)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, store: store, sender: sender, renderer: renderer, keys: keys,
		phones: newPhoneCache(defaultPhoneCacheSize),
		now:    time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(s)
	}
	s.metrics = newMetrics(s.reg)
	return s, nil
}

// Ping reports whether the store is reachable, for health checks.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// SendCode implements otp.v1.OtpService.
func (s *Service) SendCode(ctx context.Context, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	resp, err := s.sendCode(ctx, req)
	return resp, toStatus(err)
}

// VerifyCode implements otp.v1.OtpService.
func (s *Service) VerifyCode(ctx context.Context, req *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	resp, err := s.verifyCode(ctx, req)
	return resp, toStatus(err)
}

// sendRequest is a validated SendCodeRequest.
type sendRequest struct {
	rcpt     recipient
	usage    providers.UsageType
	usageKey string
	locale   string
	ip       string
	idemKey  string
}

func (s *Service) parseSend(req *otpv1.SendCodeRequest) (sendRequest, error) {
	var v violations
	var r sendRequest
	r.rcpt, _ = parseRecipientWith(req.GetRecipient(), req.GetChannel(), &v, s.phones.parse)
	r.usage, r.usageKey = parseUsage(req.GetUsageType(), &v)
	if l := req.GetLocale(); len(l) > maxLocaleLen {
		v.add("locale", "must be at most "+strconv.Itoa(maxLocaleLen)+" bytes")
	} else if loc, err := s.renderer.MatchLocale(l); err != nil {
		v.add("locale", "is not a valid BCP 47 language tag")
	} else {
		r.locale = loc
	}
	r.ip, _ = parseClientIP(req.GetClientIp(), &v)
	switch k := req.GetIdempotencyKey(); {
	case len(k) > maxIdempotencyKeyLen:
		v.add("idempotency_key", "must be at most "+strconv.Itoa(maxIdempotencyKeyLen)+" bytes")
	case !printable(k):
		v.add("idempotency_key", "must contain only printable ASCII characters")
	default:
		r.idemKey = k
	}
	return r, v.err()
}

func parseUsage(u otpv1.UsageType, v *violations) (providers.UsageType, string) {
	usage, key, ok := usageKey(u)
	if !ok {
		v.add("usage_type", "must be USAGE_TYPE_REGISTER, USAGE_TYPE_SIGN_IN, USAGE_TYPE_FORGOT_PASSWORD or USAGE_TYPE_GENERIC")
	}
	return usage, key
}

func (s *Service) sendCode(ctx context.Context, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	r, err := s.parseSend(req)
	if err != nil {
		return nil, err
	}
	if !s.sender.Serves(r.rcpt.channel, r.rcpt.addr) {
		s.metrics.sent.WithLabelValues(string(r.rcpt.channel), "", r.usageKey, "permanent_error").Inc()
		return nil, errNoProvider
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()

	now := s.now()
	rid := s.keys.recipientID(r.rcpt)
	vid := newID()
	log := s.callLog("recipient", redact.Recipient(r.rcpt.addr), "channel", string(r.rcpt.channel),
		"usage_type", r.usageKey, "verification_id", vid)
	if r.ip != "" {
		log = log.with("client_net", clientNet(r.ip))
	}
	count := func(provider, result string) {
		s.metrics.sent.WithLabelValues(string(r.rcpt.channel), provider, r.usageKey, result).Inc()
		if result == "ok" && r.rcpt.country != "" {
			s.metrics.smsCountry.WithLabelValues(r.rcpt.country).Inc()
		}
	}

	var idemID string
	fingerprint := string(r.rcpt.channel) + "/" + r.usageKey
	if r.idemKey != "" {
		// A retry is answered before any limit is looked at: the first
		// call already counted, and a full window must not refuse it.
		idemID = s.keys.idempotencyID(r.idemKey)
		if resp, done, err := s.replay(ctx, log, count, rid, idemID, fingerprint); done {
			return resp, err
		}
	}

	slots := s.sendSlots(r)
	code := newCode(s.cfg.CodeLength)
	res, err := s.store.BeginSend(ctx, SendParams{
		Recipient:      rid,
		Usage:          r.usageKey,
		CodeHash:       s.keys.codeHash(rid, r.usageKey, code),
		VerificationID: vid,
		Now:            now,
		TTL:            s.cfg.CodeTTL,
		MaxAttempts:    s.cfg.MaxAttempts,
		Cooldown:       s.cfg.ResendInterval,
		PerRecipient:   s.cfg.PerRecipient,
		IdempotencyKey: idemID,
		Fingerprint:    fingerprint,
		PendingTTL:     s.cfg.SendTimeout + 5*time.Second,
		Slots:          slots,
	})
	if err != nil {
		// The store may have acted with its answer lost: the slots go
		// again, and so do the code and cooldown if they are this send's.
		if len(slots) > 0 {
			dctx, cancel := detached(ctx)
			if err := s.store.ReleaseSlots(dctx, vid, slots); err != nil {
				log.WarnContext(ctx, "release send slots", "error", err)
			}
			cancel()
		}
		if ctx.Err() != nil {
			s.abort(ctx, log, AbortParams{Recipient: rid, Usage: r.usageKey, VerificationID: vid, IdempotencyKey: idemID})
		}
		count("", storeFailed(ctx, log, "begin send", err))
		return nil, err
	}
	switch res.Status {
	case SendAccepted:
	case SendSlotLimited:
		return nil, s.limited(ctx, count, log, res.Limit, res.RetryAfter)
	case SendCooldown:
		return nil, s.limited(ctx, count, log, limitResend, res.RetryAfter)
	case SendRecipientLimited:
		return nil, s.limited(ctx, count, log, limitPerRecipient, res.RetryAfter)
	default:
		// An idempotent retry that raced the pre-check.
		return s.idempotentAnswer(ctx, log, count, res)
	}

	// Rendered only once the send is accepted: refused sends (the bulk of
	// an SMS-pumping attack) cost no template work.
	content, err := s.renderer.Render(r.rcpt.channel, r.locale, r.usage, templates.Data{Code: code, AppName: s.cfg.AppName, TTL: s.cfg.CodeTTL})
	if err != nil {
		s.abort(ctx, log, AbortParams{Recipient: rid, Usage: r.usageKey, VerificationID: vid, IdempotencyKey: idemID})
		log.ErrorContext(ctx, "render template", "locale", r.locale, "error", err)
		return nil, fmt.Errorf("%w: %v", errNoTemplate, err)
	}
	start := time.Now()
	receipt, err := s.sender.Send(ctx, providers.Message{
		Channel:        r.rcpt.channel,
		To:             r.rcpt.addr,
		UsageType:      r.usage,
		Locale:         r.locale,
		Code:           code,
		AppName:        s.cfg.AppName,
		TTL:            s.cfg.CodeTTL,
		Content:        content,
		VerificationID: vid,
	})
	if err != nil {
		s.abort(ctx, log, AbortParams{Recipient: rid, Usage: r.usageKey, VerificationID: vid, IdempotencyKey: idemID})
		result, provider := "transient_error", ""
		var perr *providers.Error
		if errors.As(err, &perr) {
			provider = perr.Provider
			if !perr.Retryable {
				result = "permanent_error"
			}
		}
		if errors.Is(err, context.Canceled) {
			result = "canceled"
		}
		count(provider, result)
		log.WarnContext(ctx, "delivery failed", "result", result, "elapsed_ms", ms(time.Since(start)), "error", err)
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr // the caller's deadline or send_timeout ended it
		}
		return nil, err
	}

	resp := &otpv1.SendCodeResponse{
		VerificationId: vid,
		Channel:        channelProto(r.rcpt.channel),
		Provider:       receipt.Provider,
		ExpiresAt:      timestamppb.New(now.Add(s.cfg.CodeTTL)),
		ResendAfter:    timestamppb.New(now.Add(s.cfg.ResendInterval)),
	}
	if idemID != "" {
		s.completeIdempotent(ctx, log, rid, idemID, resp)
	}
	count(receipt.Provider, "ok")
	log.InfoContext(ctx, "code sent", "provider", receipt.Provider, "message_id", receipt.MessageID, "locale", r.locale, "elapsed_ms", ms(time.Since(start)))
	return resp, nil
}

// replay answers a retry of an idempotent send from the stored record,
// with done false when there is none and the send should go ahead.
func (s *Service) replay(ctx context.Context, log callLog, count func(provider, result string), rid, idemID, fingerprint string) (*otpv1.SendCodeResponse, bool, error) {
	res, err := s.store.LookupSend(ctx, rid, idemID, fingerprint)
	if err != nil {
		count("", storeFailed(ctx, log, "look up idempotency key", err))
		return nil, true, err
	}
	if res.Status == SendAccepted {
		return nil, false, nil
	}
	resp, err := s.idempotentAnswer(ctx, log, count, res)
	return resp, true, err
}

// idempotentAnswer turns what the store knows of an idempotency key into
// the call's answer.
func (s *Service) idempotentAnswer(ctx context.Context, log callLog, count func(provider, result string), res SendResult) (*otpv1.SendCodeResponse, error) {
	switch res.Status {
	case SendReplay:
		var resp otpv1.SendCodeResponse
		if err := proto.Unmarshal(res.Replay, &resp); err != nil {
			return nil, fmt.Errorf("decode stored answer: %w", err)
		}
		count(resp.GetProvider(), "replayed")
		log.InfoContext(ctx, "idempotent send replayed", "provider", resp.GetProvider())
		return &resp, nil
	case SendInProgress:
		return nil, errInProgress
	case SendIdempotencyMismatch:
		var v violations
		v.add("idempotency_key", "was already used for a different request to this recipient")
		return nil, v.err()
	}
	return nil, fmt.Errorf("unexpected send status %d", res.Status)
}

// sendSlots lists the shared limits a send counts against.
func (s *Service) sendSlots(r sendRequest) []Slot {
	var slots []Slot
	if r.ip != "" && s.cfg.PerIP.Enabled() {
		slots = append(slots, Slot{Limit: limitPerIP, Key: s.keys.ipID(r.ip), Window: s.cfg.PerIP})
	}
	if r.rcpt.channel == providers.SMS && s.cfg.PerCountry.Enabled() {
		slots = append(slots, Slot{Limit: limitPerCountry, Key: "cc:" + r.rcpt.country, Window: s.cfg.PerCountry})
	}
	return slots
}

func (s *Service) limited(ctx context.Context, count func(provider, result string), log callLog, limit string, retryAfter time.Duration) error {
	count("", "rate_limited")
	s.metrics.rateLimited.WithLabelValues(limit).Inc()
	log.InfoContext(ctx, "send rate limited", "limit", limit, "retry_after", retryAfter.String())
	return &rateLimitError{limit: limit, retryAfter: retryAfter}
}

// abort frees what a failed send holds, even when the call's own context is
// already done (a deadline is the usual reason delivery failed).
func (s *Service) abort(ctx context.Context, log callLog, p AbortParams) {
	dctx, cancel := detached(ctx)
	defer cancel()
	if err := s.store.AbortSend(dctx, p); err != nil {
		log.ErrorContext(ctx, "abort failed send: the cooldown and code stay until they expire", "error", err)
	}
}

func (s *Service) completeIdempotent(ctx context.Context, log callLog, rid, idemID string, resp *otpv1.SendCodeResponse) {
	b, err := proto.Marshal(resp)
	if err == nil {
		dctx, cancel := detached(ctx)
		defer cancel()
		err = s.store.CompleteSend(dctx, rid, idemID, b, s.cfg.IdempotencyTTL)
	}
	if err != nil {
		log.WarnContext(ctx, "store idempotent answer: a retry with the same key may send again", "error", err)
	}
}

// storeFailed logs a failed store step and returns its result label:
// "canceled" when the caller canceled the call (logged at info: nothing is
// wrong with the store, and store_error feeds the Redis alert), else
// "store_error".
func storeFailed(ctx context.Context, log callLog, step string, err error) string {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.InfoContext(ctx, step+": call canceled by the caller")
		return "canceled"
	}
	log.ErrorContext(ctx, step, "error", err)
	return "store_error"
}

// detached returns a context for clean-up work that must run even when ctx
// is done, bounded on its own.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
}

func (s *Service) verifyCode(ctx context.Context, req *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	var v violations
	rcpt, _ := parseRecipientWith(req.GetRecipient(), req.GetChannel(), &v, s.phones.parse)
	_, usageKey := parseUsage(req.GetUsageType(), &v)
	code := req.GetCode()
	switch {
	case code == "":
		v.add("code", "must be set")
	case len(code) > maxCodeInputLen || len(code) < 4 || len(code) > 10 || !digits(code):
		v.add("code", "must be 4 to 10 digits")
	}
	ip, _ := parseClientIP(req.GetClientIp(), &v)
	if err := v.err(); err != nil {
		return nil, err
	}

	rid := s.keys.recipientID(rcpt)
	res, err := s.store.Verify(ctx, VerifyParams{
		Recipient:    rid,
		Usage:        usageKey,
		CodeHash:     s.keys.codeHash(rid, usageKey, code),
		Now:          s.now(),
		PerRecipient: s.cfg.VerifyPerRecipient,
		AttemptID:    newID(),
	})
	log := s.callLog("recipient", redact.Recipient(rcpt.addr), "channel", string(rcpt.channel), "usage_type", usageKey)
	if ip != "" {
		log = log.with("client_net", clientNet(ip))
	}
	if err != nil {
		s.metrics.verified.WithLabelValues(usageKey, storeFailed(ctx, log, "verify code", err)).Inc()
		return nil, err
	}
	var result otpv1.VerifyResult
	var label string
	switch res.Status {
	case VerifyOK:
		result, label = otpv1.VerifyResult_VERIFY_RESULT_OK, "ok"
	case VerifyMismatch:
		result, label = otpv1.VerifyResult_VERIFY_RESULT_MISMATCH, "mismatch"
	case VerifyExpired:
		result, label = otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "expired"
	case VerifyTooManyAttempts:
		result, label = otpv1.VerifyResult_VERIFY_RESULT_TOO_MANY_ATTEMPTS, "too_many_attempts"
	case VerifyRateLimited:
		s.metrics.verified.WithLabelValues(usageKey, "rate_limited").Inc()
		s.metrics.rateLimited.WithLabelValues(limitVerifyPerRecipient).Inc()
		log.InfoContext(ctx, "verify rate limited", "limit", limitVerifyPerRecipient, "retry_after", res.RetryAfter.String())
		return nil, &rateLimitError{limit: limitVerifyPerRecipient, retryAfter: res.RetryAfter}
	default:
		return nil, fmt.Errorf("unknown verify status %d", res.Status)
	}
	s.metrics.verified.WithLabelValues(usageKey, label).Inc()
	log.InfoContext(ctx, "code verified", "result", label, "attempts_remaining", res.AttemptsRemaining)
	return &otpv1.VerifyCodeResponse{Result: result, AttemptsRemaining: int32(res.AttemptsRemaining)}, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ms is a duration in milliseconds, for logs.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
