package service

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// VerifyCode implements otp.v1.OtpService.
func (s *Service) VerifyCode(ctx context.Context, req *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	resp, err := s.verifyCode(ctx, req)
	return resp, toStatus(err)
}

func (s *Service) verifyCode(ctx context.Context, req *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	var v violations
	rcpt, usageKey := s.parseCodeTarget(req, &v)
	code := req.GetCode()
	switch {
	case code == "":
		v.add("code", "must be set")
	case len(code) > maxCodeInputLen || len(code) < 4 || len(code) > 10 || !digits(code):
		v.add("code", "must be 4 to 10 digits")
	}
	addr, ip, _ := parseClientIP(req.GetClientIp(), &v) // ip: what the per-IP limit counts, "" for none
	if err := v.err(); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	var attrs []slog.Attr
	if ip != "" {
		attrs = []slog.Attr{slog.String("client_net", clientNet(addr, ip))}
	}
	log := s.recipientLog(rcpt, usageKey, attrs...)
	rid := s.storeRecipient(rcpt)
	hash, previous := s.codeHashes(rid, usageKey, code)
	p := VerifyParams{
		Recipient:          rid,
		Usage:              usageKey,
		CodeHash:           hash,
		PreviousCodeHashes: previous,
		Now:                s.now(),
		PerRecipient:       s.cfg.Limits.VerifyPerRecipient,
		PerIP:              s.verifySlot(ip),
		AttemptID:          newID(),
		Grace:              consumedGrace,
	}
	var res VerifyResult
	// Asked again with the same attempt id while the answer is lost and
	// the call has time: the store answers what its earlier run decided.
	unknown, err := retryStore(ctx, func(ctx context.Context) error {
		var err error
		res, err = s.store.Verify(ctx, p)
		return err
	})
	if err != nil {
		// Nobody is told OK: a code this attempt may have consumed must
		// verify on the user's retry.
		if unknown {
			s.undoVerify(log, p)
		}
		s.metrics.verifiedCounter(usageKey, storeFailed(ctx, log, "verify code", err), rcpt.country).Inc()
		return nil, storeErr(ctx, err)
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
		limit := limitVerifyPerRecipient
		if res.ByIP {
			limit = limitVerifyPerIP
		}
		s.metrics.verifiedCounter(usageKey, "rate_limited", rcpt.country).Inc()
		s.metrics.rateLimited.WithLabelValues(limit).Inc()
		log.InfoContext(ctx, "verify rate limited", slog.String("limit", limit), slog.String("retry_after", res.RetryAfter.String()))
		return nil, &rateLimitError{limit: limit, retryAfter: res.RetryAfter}
	default:
		err := fmt.Errorf("verify: unknown status %d from the store", res.Status)
		s.metrics.verifiedCounter(usageKey, storeFailed(ctx, log, "verify code", err), rcpt.country).Inc()
		return nil, storeErr(ctx, err)
	}
	if res.Status == VerifyOK && rcpt.channel == otp.SMS {
		s.credit(ctx, log, rcpt.country, res, p.Now)
	}
	s.metrics.verifiedCounter(usageKey, label, rcpt.country).Inc()
	log.InfoContext(ctx, "code verified", slog.String("result", label), slog.Int("attempts_remaining", res.AttemptsRemaining))
	return &otpv1.VerifyCodeResponse{Result: result, AttemptsRemaining: int32(res.AttemptsRemaining)}, nil
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
