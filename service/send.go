package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

// SendCode implements otp.v1.OtpService.
func (s *Service) SendCode(ctx context.Context, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	resp, err := s.sendCode(ctx, req)
	return resp, toStatus(err)
}

// sendRequest is a validated SendCodeRequest.
type sendRequest struct {
	rcpt     recipient
	usage    otp.UsageType
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
	code := newCode(s.cfg.Code.Length)
	res, err := s.store.BeginSend(ctx, SendParams{
		Recipient:      rid,
		Usage:          r.usageKey,
		CodeHash:       s.keys.codeHash(rid, r.usageKey, code),
		VerificationID: vid,
		Now:            now,
		TTL:            s.cfg.Code.TTL,
		MaxAttempts:    s.cfg.Code.MaxAttempts,
		Cooldown:       s.cfg.Limits.ResendInterval,
		PerRecipient:   s.cfg.Limits.PerRecipient,
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
	content, err := s.renderer.Render(r.rcpt.channel, r.locale, r.usage, templates.Data{Code: code, AppName: s.cfg.AppName, TTL: s.cfg.Code.TTL})
	if err != nil {
		s.abort(ctx, log, AbortParams{Recipient: rid, Usage: r.usageKey, VerificationID: vid, IdempotencyKey: idemID})
		log.ErrorContext(ctx, "render template", "locale", r.locale, "error", err)
		return nil, fmt.Errorf("%w: %v", errNoTemplate, err)
	}
	start := time.Now()
	receipt, err := s.sender.Send(ctx, otp.Message{
		Channel:        r.rcpt.channel,
		To:             r.rcpt.addr,
		UsageType:      r.usage,
		Locale:         r.locale,
		Code:           code,
		AppName:        s.cfg.AppName,
		TTL:            s.cfg.Code.TTL,
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
		ExpiresAt:      timestamppb.New(now.Add(s.cfg.Code.TTL)),
		ResendAfter:    timestamppb.New(now.Add(s.cfg.Limits.ResendInterval)),
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
