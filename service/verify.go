package service

import (
	"context"
	"fmt"

	"github.com/otpd/otpd/internal/redact"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// VerifyCode implements otp.v1.OtpService.
func (s *Service) VerifyCode(ctx context.Context, req *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	resp, err := s.verifyCode(ctx, req)
	return resp, toStatus(err)
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
		PerRecipient: s.cfg.Limits.VerifyPerRecipient,
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
