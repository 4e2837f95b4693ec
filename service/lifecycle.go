package service

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// A code's life after SendCode, besides VerifyCode: CancelCode kills it
// (sign-out, an account change), GetCodeStatus describes it (a sign-in page
// showing the real cooldown). Both go through the caller auth of every RPC;
// neither counts against a limit.

// codeTarget is what names a code in VerifyCode, CancelCode and
// GetCodeStatus.
type codeTarget interface {
	GetRecipient() string
	GetChannel() otpv1.Channel
	GetUsageType() otpv1.UsageType
}

// parseCodeTarget validates the fields that name a code, the same way for
// every RPC that takes them, adding what is wrong to v.
func (s *Service) parseCodeTarget(req codeTarget, v *violations) (recipient, string) {
	rcpt, _ := parseRecipientWith(req.GetRecipient(), req.GetChannel(), v, s.phones.parse)
	usage, usageKey := parseUsage(req.GetUsageType(), v)
	if usage == otp.OrganizationInvitation {
		v.add("usage_type", deliverOnly)
	}
	return rcpt, usageKey
}

// codeCall validates the fields of a call on a live code (CancelCode,
// GetCodeStatus) and returns its recipient, usage key and store parameters.
func (s *Service) codeCall(req codeTarget) (recipient, string, CodeParams, error) {
	var v violations
	rcpt, usageKey := s.parseCodeTarget(req, &v)
	if err := v.err(); err != nil {
		return recipient{}, "", CodeParams{}, err
	}
	return rcpt, usageKey, CodeParams{Recipient: s.storeRecipient(rcpt), Usage: usageKey, Now: s.now()}, nil
}

// CancelCode implements otp.v1.OtpService.
func (s *Service) CancelCode(ctx context.Context, req *otpv1.CancelCodeRequest) (*otpv1.CancelCodeResponse, error) {
	resp, err := s.cancelCode(ctx, req)
	return resp, toStatus(err)
}

func (s *Service) cancelCode(ctx context.Context, req *otpv1.CancelCodeRequest) (*otpv1.CancelCodeResponse, error) {
	rcpt, usageKey, p, err := s.codeCall(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	log := s.recipientLog(rcpt, usageKey)
	var cancelled bool
	// Asked again while the answer is lost: a cancel is idempotent (the
	// second run finds nothing, and says so).
	_, err = retryStore(ctx, func(ctx context.Context) error {
		var err error
		cancelled, err = s.store.CancelCode(ctx, p)
		return err
	})
	if err != nil {
		storeFailed(ctx, log, "cancel code", err)
		return nil, storeErr(ctx, err)
	}
	if cancelled {
		s.metrics.cancelled.WithLabelValues(usageKey).Inc()
	}
	log.InfoContext(ctx, "code cancelled", slog.Bool("cancelled", cancelled))
	return &otpv1.CancelCodeResponse{Cancelled: cancelled}, nil
}

// GetCodeStatus implements otp.v1.OtpService.
func (s *Service) GetCodeStatus(ctx context.Context, req *otpv1.GetCodeStatusRequest) (*otpv1.GetCodeStatusResponse, error) {
	resp, err := s.getCodeStatus(ctx, req)
	return resp, toStatus(err)
}

func (s *Service) getCodeStatus(ctx context.Context, req *otpv1.GetCodeStatusRequest) (*otpv1.GetCodeStatusResponse, error) {
	rcpt, usageKey, p, err := s.codeCall(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	var st CodeStatus
	_, err = retryStore(ctx, func(ctx context.Context) error {
		var err error
		st, err = s.store.CodeStatus(ctx, p)
		return err
	})
	if err != nil {
		log := s.recipientLog(rcpt, usageKey)
		storeFailed(ctx, log, "code status", err)
		return nil, storeErr(ctx, err)
	}
	resp := &otpv1.GetCodeStatusResponse{Live: st.Live}
	if st.Live {
		resp.ExpiresAt = timestamppb.New(st.ExpiresAt)
		resp.AttemptsRemaining = int32(st.AttemptsRemaining)
		resp.ValidCodes = int32(st.ValidCodes)
	}
	if !st.ResendAfter.IsZero() {
		resp.ResendAfter = timestamppb.New(st.ResendAfter)
	}
	return resp, nil
}
