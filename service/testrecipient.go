package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// MaxTestRecipients bounds test_recipients: each is an account whose
// code anyone who learns it can use.
const MaxTestRecipients = 20

// TestRecipientProvider is the provider a send to a test recipient
// answers with: nothing was delivered.
const TestRecipientProvider = "test_recipient"

// TestRecipient is one entry of test_recipients: a recipient with a fixed
// code, for app-store review and end-to-end tests. A SendCode to it
// delivers nothing and stores Code as if it had been sent, with no
// cooldown, no send limit and no fraud rule; a DeliverCode to it delivers
// nothing and stores nothing. VerifyCode checks it as any code, with every
// verify limit: resends are free, so limits.verify_per_recipient is what
// bounds the guesses at a fixed code, and it must be on.
type TestRecipient struct {
	// Recipient is an E.164 number ("+" and 6 to 15 digits; fictional
	// numbers such as +15555550100 are fine: no numbering-plan check) or
	// an email address.
	Recipient MaskedRecipient `yaml:"recipient"`
	// Code is the fixed code: code.length digits.
	Code redact.Secret `yaml:"code"`
}

// MaskedRecipient is a recipient that prints masked (redact.Recipient),
// as otpd -check shows test recipients.
type MaskedRecipient string

// String returns the recipient masked.
func (m MaskedRecipient) String() string { return redact.Recipient(string(m)) }

// MarshalText returns the recipient masked.
func (m MaskedRecipient) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// validateTestRecipients checks test_recipients; errors name the key.
func validateTestRecipients(list []TestRecipient, codeLen int, verifyPerRecipient Window) error {
	if len(list) == 0 {
		return nil
	}
	var errs []error
	if len(list) > MaxTestRecipients {
		errs = append(errs, fmt.Errorf("test_recipients: %d entries, at most %d (each is an account anyone who learns its fixed code can enter)", len(list), MaxTestRecipients))
	}
	if !verifyPerRecipient.Enabled() {
		errs = append(errs, errors.New("test_recipients: need limits.verify_per_recipient: resends to a test recipient are not limited, so that window is what bounds the guesses at its fixed code"))
	}
	seen := map[string]int{}
	for i, t := range list {
		key := fmt.Sprintf("test_recipients[%d]", i)
		r, err := parseTestRecipient(string(t.Recipient))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.recipient: %w", key, err))
		} else if j, dup := seen[r.key()]; dup {
			errs = append(errs, fmt.Errorf("%s.recipient: is test_recipients[%d] too", key, j))
		} else {
			seen[r.key()] = i
		}
		if c := t.Code.Reveal(); len(c) != codeLen || !digits(c) {
			errs = append(errs, fmt.Errorf("%s.code: must be %d digits, as code.length", key, codeLen))
		}
	}
	return errors.Join(errs...)
}

// parseTestRecipient reads a test recipient: an email address as any, a
// phone number as "+" and digits only.
func parseTestRecipient(s string) (recipient, error) {
	if strings.Contains(s, "@") {
		var v violations
		r, ok := parseEmail(s, &v)
		if !ok {
			return recipient{}, fmt.Errorf("%q is not an email address", s)
		}
		return r, nil
	}
	rest, ok := strings.CutPrefix(s, "+")
	if !ok || len(rest) < 6 || len(rest) > 15 || !digits(rest) || rest[0] == '0' {
		return recipient{}, fmt.Errorf("%q is neither an email address nor an E.164 number (\"+\" and 6 to 15 digits)", redact.Recipient(s))
	}
	r := recipient{channel: otp.SMS, addr: s}
	if n, err := parseNumber(s); err == nil {
		r.country = strconv.Itoa(int(n.GetCountryCode()))
	}
	return r, nil
}

// testRecipients are the test_recipients of the configuration.
type testRecipients struct {
	// phones are the phone numbers, by their E.164 form: parsePhone would
	// refuse the fictional ones.
	phones map[string]recipient
	// codes are the fixed codes, by recipient key.
	codes map[string]string
}

// newTestRecipients indexes list, which must pass validation.
func newTestRecipients(list []TestRecipient) *testRecipients {
	t := &testRecipients{phones: map[string]recipient{}, codes: map[string]string{}}
	for _, e := range list {
		r, err := parseTestRecipient(string(e.Recipient))
		if err != nil {
			continue
		}
		if r.channel == otp.SMS {
			t.phones[r.addr] = r
		}
		t.codes[r.key()] = e.Code.Reveal()
	}
	return t
}

// code returns the fixed code of r when r is a test recipient.
func (t *testRecipients) code(r recipient) (string, bool) {
	if len(t.codes) == 0 {
		return "", false
	}
	c, ok := t.codes[r.key()]
	return c, ok
}

// parser wraps a phone parser so that a test recipient's number, written
// with or without separators, is accepted as it is.
func (t *testRecipients) parser(next phoneParser) phoneParser {
	if len(t.phones) == 0 {
		return next
	}
	return func(raw string, v *violations) (recipient, bool) {
		e164 := strings.Map(func(r rune) rune {
			if strings.ContainsRune(" -.()", r) {
				return -1
			}
			return r
		}, raw)
		if r, ok := t.phones[e164]; ok {
			return r, true
		}
		return next(raw, v)
	}
}

// sendTest answers a send to a test recipient: nothing is delivered; a
// SendCode stores the fixed code as if it had been sent, with no cooldown
// and counting against no send limit, so that it verifies through
// VerifyCode and its limits as any code does.
func (s *Service) sendTest(ctx context.Context, r sendRequest, code string) (*otpv1.SendCodeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	now, vid := s.now(), newID()
	log := s.recipientLog(r.rcpt, r.usageKey, slog.String("verification_id", vid))
	count := func(result string) {
		s.metrics.sentCounter(string(r.rcpt.channel), TestRecipientProvider, r.usageKey, result, otp.Entry(ctx)).Inc()
	}
	resp := &otpv1.SendCodeResponse{
		VerificationId: vid,
		Channel:        channelProto(r.rcpt.channel),
		Provider:       TestRecipientProvider,
		ResendAfter:    timestamppb.New(now),
	}
	if !r.deliver {
		rid := s.storeRecipient(r.rcpt)
		p := SendParams{
			Recipient:      rid,
			Usage:          r.usageKey,
			CodeHash:       s.keys.codeHash(rid.ID, r.usageKey, code),
			VerificationID: vid,
			Now:            now,
			TTL:            s.cfg.Code.TTL,
			MaxAttempts:    s.cfg.Code.MaxAttempts,
			PendingTTL:     s.cfg.SendTimeout + 5*time.Second,
		}
		var res SendResult
		// A lost answer leaves at worst the fixed code stored: what the
		// tester types anyway.
		_, err := retryStore(ctx, func(ctx context.Context) error {
			var err error
			res, err = s.store.BeginSend(ctx, p)
			return err
		})
		if err == nil && res.Status != SendAccepted {
			err = fmt.Errorf("unexpected send status %d from the store for a send without limits", res.Status)
		}
		if err != nil {
			count(storeFailed(ctx, log, "store test recipient's code", err))
			return nil, storeErr(ctx, err)
		}
		resp.ExpiresAt = timestamppb.New(now.Add(s.cfg.Code.TTL))
	}
	count("ok")
	log.InfoContext(ctx, "test recipient: nothing delivered")
	return resp, nil
}
