package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

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

// DeliverCode implements otp.v1.OtpService.
func (s *Service) DeliverCode(ctx context.Context, req *otpv1.DeliverCodeRequest) (*otpv1.DeliverCodeResponse, error) {
	resp, err := s.deliverCode(ctx, req)
	return resp, toStatus(err)
}

// sendRequest is a validated SendCodeRequest or DeliverCodeRequest.
type sendRequest struct {
	rcpt     recipient
	usage    otp.UsageType
	usageKey string
	locale   string
	ip       string
	// clientAddr is the client IP itself (ip is an IPv6 client's /64),
	// for fraud.always_allow.client_ips; invalid when none was given.
	clientAddr netip.Addr
	idemKey    string
	// deliver is set for DeliverCode: the code (or the link) is the
	// caller's, and nothing verifiable is stored.
	deliver bool
	// code is the caller's code for DeliverCode, empty for SendCode
	// (otpd generates one) and for an invitation.
	code string
	// link is the invitation link of an OrganizationInvitation. It may
	// carry a token: never logged, never stored.
	link string
}

// sendFields are the fields SendCodeRequest and DeliverCodeRequest share.
type sendFields interface {
	GetRecipient() string
	GetChannel() otpv1.Channel
	GetUsageType() otpv1.UsageType
	GetLocale() string
	GetClientIp() string
	GetIdempotencyKey() string
}

// Caller codes (DeliverCode) are 4 to 10 characters of [0-9A-Za-z]: what
// identity servers generate (Logto: 6 digits), short enough for SMS
// autofill formats.
const (
	minCallerCode = 4
	maxCallerCode = 10
)

// maxLinkLen bounds an invitation link: what browsers and mail clients
// reliably keep, with room for Logto's token.
const maxLinkLen = 2048

// deliverOnly is the violation of a SendCode or VerifyCode for an
// invitation, which carries the caller's link and no code of otpd's.
const deliverOnly = "USAGE_TYPE_ORGANIZATION_INVITATION is for DeliverCode only"

func (s *Service) sendCode(ctx context.Context, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	var v violations
	r := s.parseSend(req, &v)
	if r.usage == otp.OrganizationInvitation {
		v.add("usage_type", deliverOnly)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return s.send(ctx, r)
}

func (s *Service) deliverCode(ctx context.Context, req *otpv1.DeliverCodeRequest) (*otpv1.DeliverCodeResponse, error) {
	var v violations
	r := s.parseSend(req, &v)
	r.deliver = true
	if r.usage == otp.OrganizationInvitation {
		if req.GetCode() != "" {
			v.add("code", "must be empty for USAGE_TYPE_ORGANIZATION_INVITATION, which delivers a link")
		}
		if problem := checkLink(req.GetLink()); problem != "" {
			v.add("link", problem)
		} else {
			r.link = req.GetLink()
		}
	} else {
		switch code := req.GetCode(); {
		case code == "":
			v.add("code", "must be set to the code to deliver")
		case len(code) < minCallerCode || len(code) > maxCallerCode || !alphanumeric(code):
			v.add("code", "must be "+strconv.Itoa(minCallerCode)+" to "+strconv.Itoa(maxCallerCode)+" characters of [0-9A-Za-z]")
		default:
			r.code = code
		}
		if req.GetLink() != "" {
			v.add("link", "must be empty except for USAGE_TYPE_ORGANIZATION_INVITATION")
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	resp, err := s.send(ctx, r)
	if err != nil {
		return nil, err
	}
	return &otpv1.DeliverCodeResponse{
		VerificationId: resp.GetVerificationId(),
		Channel:        resp.GetChannel(),
		Provider:       resp.GetProvider(),
		ResendAfter:    resp.GetResendAfter(),
	}, nil
}

// checkLink returns what is wrong with an invitation link, or "". The
// answer never quotes the link, which may carry a token.
func checkLink(link string) string {
	switch {
	case link == "":
		return "must be set to the invitation link"
	case len(link) > maxLinkLen:
		return "must be at most " + strconv.Itoa(maxLinkLen) + " bytes"
	case strings.ContainsFunc(link, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return "must not contain blanks or control characters"
	}
	u, err := url.Parse(link)
	switch {
	case err != nil || !u.IsAbs():
		return "must be an absolute https or http URL"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must be an https or http URL"
	case u.Opaque != "" || u.Hostname() == "":
		return "must have a host"
	case u.User != nil:
		// "https://bank.example@evil.example/" reads as the bank's.
		return "must not carry user info"
	}
	return ""
}

// alphanumeric reports whether s holds only [0-9A-Za-z].
func alphanumeric(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// parseSend validates the fields every send shares, adding what is wrong
// to v.
func (s *Service) parseSend(req sendFields, v *violations) sendRequest {
	var r sendRequest
	r.rcpt, _ = parseRecipientWith(req.GetRecipient(), req.GetChannel(), v, s.phones.parse)
	r.usage, r.usageKey = parseUsage(req.GetUsageType(), v)
	if l := req.GetLocale(); len(l) > maxLocaleLen {
		v.add("locale", "must be at most "+strconv.Itoa(maxLocaleLen)+" bytes")
	} else if loc, err := s.renderer.MatchLocale(l); err != nil {
		v.add("locale", "is not a valid BCP 47 language tag")
	} else {
		r.locale = loc
	}
	r.clientAddr, r.ip, _ = parseClientIP(req.GetClientIp(), v)
	switch k := req.GetIdempotencyKey(); {
	case len(k) > maxIdempotencyKeyLen:
		v.add("idempotency_key", "must be at most "+strconv.Itoa(maxIdempotencyKeyLen)+" bytes")
	case !printable(k):
		v.add("idempotency_key", "must contain only printable ASCII characters")
	default:
		r.idemKey = k
	}
	return r
}

// send is the one path of SendCode and DeliverCode: the provider check,
// idempotency, the limits, rendering, routing and failover, the abort of a
// send delivered nowhere, metrics and logs (never the code). SendCode
// stores the hash of a code it generates; DeliverCode (r.deliver) stores
// nothing verifiable, and its answer has no ExpiresAt.
func (s *Service) send(ctx context.Context, r sendRequest) (*otpv1.SendCodeResponse, error) {
	deliver := r.deliver
	if code, ok := s.tests.code(r.rcpt); ok {
		return s.sendTest(ctx, r, code)
	}
	entry := otp.Entry(ctx)
	count := func(provider, result string) {
		s.metrics.sentCounter(string(r.rcpt.channel), provider, r.usageKey, result, entry).Inc()
		if result == "ok" && r.rcpt.country != "" {
			s.metrics.smsCountryCounter(r.rcpt.country).Inc()
		}
	}
	// Refusals that need the operator, before anything counts: an
	// invitation only the operator's templates render, a recipient no
	// provider serves.
	if !s.renderer.Has(r.rcpt.channel, r.locale, r.usage) {
		count("", "permanent_error")
		return nil, &noTemplateError{channel: r.rcpt.channel, usage: r.usage, locale: r.locale}
	}
	if !s.sender.Serves(r.rcpt.channel, r.rcpt.addr, r.usage) {
		count("", "permanent_error")
		return nil, errNoProvider
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()

	now := s.now()
	rid := s.storeRecipient(r.rcpt)
	vid := newID()
	attrs := make([]slog.Attr, 1, 2)
	attrs[0] = slog.String("verification_id", vid)
	if r.ip != "" {
		attrs = append(attrs, slog.String("client_net", clientNet(r.clientAddr, r.ip)))
	}
	log := s.recipientLog(r.rcpt, r.usageKey, attrs...)

	// In memory, before the store is asked: a refused send costs nothing.
	if err := s.checkFraud(ctx, r, log); err != nil {
		count("", "blocked")
		return nil, err
	}

	var idemID IdempotencyKey
	fingerprint := string(r.rcpt.channel) + "/" + r.usageKey
	if deliver {
		// A key used for a SendCode never replays a DeliverCode's answer,
		// nor the other way round. The code is not in it: a fingerprint
		// is stored, and the store holds nothing of a delivered code.
		fingerprint = "deliver/" + fingerprint
	}
	if r.idemKey != "" {
		// A retry is answered before any limit is looked at: the first
		// call already counted, and a full window must not refuse it.
		idemID = s.storeIdempotencyKey(r.idemKey)
		if resp, done, err := s.replay(ctx, log, count, rid, idemID, fingerprint); done {
			return resp, err
		}
	}

	code := r.code
	var codeHash []byte
	if !deliver {
		code = newCode(s.cfg.Code.Length)
		codeHash = s.keys.codeHash(rid.ID, r.usageKey, code)
	}
	// The shared limits' slots, then the conversion rule's, which a failed
	// delivery releases (abort).
	slots := s.sendSlots(r)
	shared := len(slots)
	slots, credit := s.conversionSlots(r, slots)
	conversion := slots[shared:]
	params := SendParams{
		Recipient:      rid,
		Usage:          r.usageKey,
		CodeHash:       codeHash,
		NoCode:         deliver,
		VerificationID: vid,
		Now:            now,
		TTL:            s.cfg.Code.TTL,
		MaxAttempts:    s.cfg.Code.MaxAttempts,
		KeepPrevious:   s.cfg.Code.KeepPrevious,
		Cooldown:       s.cfg.Limits.ResendInterval,
		PerRecipient:   s.cfg.Limits.PerRecipient,
		IdempotencyKey: idemID,
		Fingerprint:    fingerprint,
		PendingTTL:     s.cfg.SendTimeout + 5*time.Second,
		Slots:          slots,
		Credit:         credit,
	}
	var res SendResult
	// Asked again with the same verification id while the answer is lost
	// and the call has time: the store recognises its own earlier run.
	unknown, err := retryStore(ctx, func(ctx context.Context) error {
		var err error
		res, err = s.store.BeginSend(ctx, params)
		return err
	})
	if err != nil {
		// The store may have acted with its answer lost: what it stored
		// goes again once it answers, so that the retry RetryInfo advises
		// is not refused by this call's cooldown.
		s.undoSend(ctx, log, params, unknown)
		count("", storeFailed(ctx, log, "begin send", err))
		return nil, storeErr(ctx, err)
	}
	// A late copy of an attempt whose answer was lost may still arrive:
	// an abort must leave a tombstone for it.
	abort := AbortParams{Recipient: rid, Usage: r.usageKey, VerificationID: vid, CodeHash: codeHash, IdempotencyKey: idemID, Now: now}
	if unknown {
		abort.Tombstone = tombstoneTTL
	}
	if unknown && res.Status != SendAccepted {
		// Refused in the end; a late copy of an earlier attempt must not
		// store a code after all.
		s.undoSend(ctx, log, params, true)
	}
	switch res.Status {
	case SendAccepted:
		if res.Over != "" {
			s.conversionPassedOver(ctx, r, log, res.Over)
		}
	case SendSlotLimited:
		if res.Limit == conversionCountry || res.Limit == conversionIP {
			return nil, s.conversionRefused(ctx, log, count, res.Limit, res.RetryAfter)
		}
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
	ttl := s.cfg.Code.TTL
	if r.usage == otp.OrganizationInvitation {
		ttl = 0 // no code, nothing of otpd's that expires
	}
	content, err := s.renderer.Render(r.rcpt.channel, r.locale, r.usage, templates.Data{Code: code, AppName: s.cfg.AppName, TTL: ttl, Link: r.link})
	if err != nil {
		s.abort(ctx, log, abort, conversion)
		log.ErrorContext(ctx, "render template", slog.String("locale", r.locale), slog.Any("error", err))
		return nil, fmt.Errorf("%w: %v", errNoTemplate, err)
	}
	start := time.Now()
	receipt, err := s.sender.Send(ctx, otp.Message{
		Channel:        r.rcpt.channel,
		To:             r.rcpt.addr,
		UsageType:      r.usage,
		Locale:         r.locale,
		Code:           code,
		Link:           r.link,
		AppName:        s.cfg.AppName,
		TTL:            ttl,
		Content:        content,
		VerificationID: vid,
		ClientIP:       r.ip,
	})
	if err != nil {
		s.abort(ctx, log, abort, conversion)
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
		log.WarnContext(ctx, "delivery failed", slog.String("result", result), slog.Float64("elapsed_ms", ms(time.Since(start))), slog.Any("error", err))
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr // the caller's deadline or send_timeout ended it
		}
		return nil, err
	}

	resp := &otpv1.SendCodeResponse{
		VerificationId: vid,
		Channel:        channelProto(r.rcpt.channel),
		Provider:       receipt.Provider,
		ResendAfter:    timestamppb.New(now.Add(s.cfg.Limits.ResendInterval)),
	}
	msg := "code delivered"
	if r.usage == otp.OrganizationInvitation {
		msg = "invitation delivered"
	}
	if !deliver {
		resp.ExpiresAt = timestamppb.New(now.Add(s.cfg.Code.TTL))
		msg = "code sent"
	}
	if idemID.ID != "" {
		s.completeIdempotent(ctx, log, rid, idemID, resp)
	}
	count(receipt.Provider, "ok")
	log.InfoContext(ctx, msg, slog.String("provider", receipt.Provider), slog.String("message_id", receipt.MessageID),
		slog.String("locale", r.locale), slog.Float64("elapsed_ms", ms(time.Since(start))))
	return resp, nil
}

// replay answers a retry of an idempotent send from the stored record,
// with done false when there is none and the send should go ahead.
func (s *Service) replay(ctx context.Context, log callLog, count func(provider, result string), rid Recipient, idemID IdempotencyKey, fingerprint string) (*otpv1.SendCodeResponse, bool, error) {
	var res SendResult
	_, err := retryStore(ctx, func(ctx context.Context) error {
		var err error
		res, err = s.store.LookupSend(ctx, rid, idemID, fingerprint)
		return err
	})
	if err != nil {
		count("", storeFailed(ctx, log, "look up idempotency key", err))
		return nil, true, storeErr(ctx, err)
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
			return nil, &storeError{fmt.Errorf("decode stored answer: %w", err)}
		}
		count(resp.GetProvider(), "replayed")
		log.InfoContext(ctx, "idempotent send replayed", slog.String("provider", resp.GetProvider()))
		return &resp, nil
	case SendInProgress:
		return nil, errInProgress
	case SendIdempotencyMismatch:
		var v violations
		v.add("idempotency_key", "was already used for a different request to this recipient")
		return nil, v.err()
	}
	return nil, &storeError{fmt.Errorf("unexpected send status %d from the store", res.Status)}
}

// abort frees what a send whose delivery failed holds, even when the
// call's own context is already done (a deadline is the usual reason
// delivery failed): at once, so that the user can ask again at once, and
// in the background if the store does not answer. The send leaves its
// conversion slots too: a code delivered nowhere is not an unverified
// one. It stays in the other windows, which count attempts.
func (s *Service) abort(ctx context.Context, log callLog, p AbortParams, conversion []Slot) {
	s.cleanUp(ctx, log, "abort failed send", func(ctx context.Context) error {
		if err := s.store.AbortSend(ctx, p); err != nil {
			return err
		}
		return s.store.ReleaseSlots(ctx, p.VerificationID, conversion)
	})
}

func (s *Service) completeIdempotent(ctx context.Context, log callLog, rid Recipient, idemID IdempotencyKey, resp *otpv1.SendCodeResponse) {
	b, err := proto.Marshal(resp)
	if err != nil {
		log.ErrorContext(ctx, "encode idempotent answer: a retry with the same key may send again", slog.Any("error", err))
		return
	}
	s.cleanUp(ctx, log, "store idempotent answer", func(ctx context.Context) error {
		return s.store.CompleteSend(ctx, rid, idemID, b, s.cfg.IdempotencyTTL)
	})
}

// cleanUp runs a clean-up step at once and, when the store does not
// answer, hands it to the background undos.
func (s *Service) cleanUp(ctx context.Context, log callLog, what string, step func(context.Context) error) {
	dctx, cancel := detached(ctx)
	err := step(dctx)
	cancel()
	if err != nil {
		log.WarnContext(ctx, what+": retrying in the background", slog.Any("error", err))
		s.undo.start(log, what, step)
	}
}
