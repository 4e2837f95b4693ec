package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otpd/otpd/internal/grpcauth"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// The paths of Supabase Auth's Send SMS and Send Email hooks on listen.api.
const (
	supabaseSMSPath   = "/hooks/supabase/sms"
	supabaseEmailPath = "/hooks/supabase/email"
)

// Standard Webhooks, as Supabase Auth signs its hook requests.
const (
	// webhookTolerance is how far webhook-timestamp may be from now, either
	// way (the Standard Webhooks libraries' default).
	webhookTolerance = 5 * time.Minute
	// webhookMinSecretBytes is the shortest secret accepted: the Standard
	// Webhooks specification asks for 24 to 64 random bytes.
	webhookMinSecretBytes = 24
	// maxSeenWebhookIDs bounds the memory of the replay check.
	maxSeenWebhookIDs = 100_000
	// supabaseCaller is the caller name of the hook's calls, in logs and
	// metrics: the signature, not a token, authenticates them.
	supabaseCaller = "supabase"
)

// parseWebhookSecret reads a secret as Supabase shows it,
// "v1,whsec_<base64>", into the HMAC key. Its errors never quote it.
func parseWebhookSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), "v1,")
	if !ok {
		return nil, errors.New(`must be "v1,whsec_<base64>" as Supabase shows it`)
	}
	b64 = strings.TrimPrefix(b64, "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New(`is not base64 after "v1,whsec_"`)
	}
	if len(key) < webhookMinSecretBytes {
		return nil, fmt.Errorf("is %d bytes long; Standard Webhooks secrets are at least %d random bytes", len(key), webhookMinSecretBytes)
	}
	return key, nil
}

// supabaseHook serves POST /hooks/supabase/{sms,email}: Supabase Auth's
// Send SMS and Send Email hooks. A request must carry a Standard Webhooks
// signature made with one of hooks.supabase.secrets, a timestamp within
// webhookTolerance and a webhook-id not seen before; its code then goes out
// through DeliverCode, made in process (see deliverer) as the caller
// "supabase" with the entry "supabase".
//
// Its answers follow Supabase Auth's hook client: 200 JSON on delivery; a
// refusal the user should see (a limit, a bad address) as 200 JSON
// {"error": {"http_code", "message"}}, which Supabase turns into its own
// answer to the user (a bare 429 would be retried, then shown as a 500);
// a bad signature 401.
type supabaseHook struct {
	d      deliverer
	keys   [][]byte
	ignore ipFilter
	seen   *seenIDs
	now    func() time.Time
}

func newSupabaseHook(rpc http.Handler, hooks Hooks) *supabaseHook {
	timeout := hooks.Supabase.Timeout
	if hooks.SendTimeout > 0 && (timeout <= 0 || hooks.SendTimeout < timeout) {
		timeout = hooks.SendTimeout
	}
	h := &supabaseHook{
		d:      newDeliverer(rpc, entrySupabase, timeout),
		ignore: parsePrefixes(hooks.Supabase.IgnoreIPs),
		seen:   &seenIDs{ids: map[string]time.Time{}},
		now:    time.Now,
	}
	for _, s := range hooks.Supabase.Secrets {
		if key, err := parseWebhookSecret(s); err == nil { // validated
			h.keys = append(h.keys, key)
		}
	}
	return h
}

// supabaseRequest is what Supabase Auth sends to its Send SMS
// (SendSMSInput) and Send Email (SendEmailInput) hooks; other keys are
// ignored.
type supabaseRequest struct {
	Metadata struct {
		IPAddress string `json:"ip_address"`
	} `json:"metadata"`
	User struct {
		Phone        string         `json:"phone"`
		NewPhone     string         `json:"new_phone"`
		Email        string         `json:"email"`
		NewEmail     string         `json:"new_email"`
		UserMetadata map[string]any `json:"user_metadata"`
	} `json:"user"`
	SMS struct {
		OTP     string `json:"otp"`
		SMSType string `json:"sms_type"`
		Phone   string `json:"phone"`
	} `json:"sms"`
	EmailData struct {
		Token           string `json:"token"`
		TokenNew        string `json:"token_new"`
		EmailActionType string `json:"email_action_type"`
	} `json:"email_data"`
}

// supabaseSMSTypes maps the Send SMS hook's sms_type to usage types;
// any other is Generic.
var supabaseSMSTypes = map[string]otpv1.UsageType{
	"confirmation":     otpv1.UsageType_USAGE_TYPE_SIGN_IN, // phone sign-up and sign-in with an OTP
	"sms":              otpv1.UsageType_USAGE_TYPE_SIGN_IN,
	"phone_change":     otpv1.UsageType_USAGE_TYPE_BIND_NEW_IDENTIFIER,
	"reauthentication": otpv1.UsageType_USAGE_TYPE_USER_PERMISSION_VALIDATION,
	"mfa":              otpv1.UsageType_USAGE_TYPE_MFA_VERIFICATION,
}

// supabaseEmailTypes maps the Send Email hook's email_action_type to usage
// types; email_change is planned apart (one or two messages).
var supabaseEmailTypes = map[string]otpv1.UsageType{
	"signup":           otpv1.UsageType_USAGE_TYPE_REGISTER,
	"invite":           otpv1.UsageType_USAGE_TYPE_REGISTER,
	"magiclink":        otpv1.UsageType_USAGE_TYPE_SIGN_IN,
	"email":            otpv1.UsageType_USAGE_TYPE_SIGN_IN,
	"recovery":         otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD,
	"reauthentication": otpv1.UsageType_USAGE_TYPE_USER_PERMISSION_VALIDATION,
}

func (h *supabaseHook) handler(ch otpv1.Channel) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			supabaseAnswer(w, http.StatusMethodNotAllowed, "Use POST.")
			return
		}
		if len(h.keys) == 0 {
			supabaseAnswer(w, http.StatusNotFound, "The Supabase hook is off: set hooks.supabase.secrets.")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, hookMaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				supabaseAnswer(w, http.StatusRequestEntityTooLarge, "The request is too large.")
				return
			}
			supabaseAnswer(w, http.StatusBadRequest, "The request could not be read.")
			return
		}
		id, msg := h.verify(r.Header, body)
		if msg != "" {
			supabaseAnswer(w, http.StatusUnauthorized, msg)
			return
		}
		// Vouched for by its signature: no token or client certificate.
		ctx := grpcauth.Vouch(r.Context(), supabaseCaller)
		msgs, refusal := h.plan(body, ch, id)
		if refusal != nil {
			_ = h.d.refused(ctx, r, ch, nil) // counted and logged as any call
			supabaseRefusal(w, refusal.status, refusal.msg)
			return
		}
		for _, m := range msgs {
			if _, err := h.d.deliver(ctx, r, m, nil); err != nil {
				status, _, text := hookError(err, supabaseField(ch))
				supabaseRefusal(w, status, text)
				return
			}
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
}

// verify checks the Standard Webhooks headers of a request: it returns the
// webhook-id, or why the request is refused. The id is remembered, so a
// replay of a signed request is refused on this instance; on another, its
// idempotency key (derived from the id) answers it without a second
// delivery.
func (h *supabaseHook) verify(header http.Header, body []byte) (id, refusal string) {
	id, ts, sigs := header.Get("Webhook-Id"), header.Get("Webhook-Timestamp"), header.Get("Webhook-Signature")
	if id == "" || ts == "" || sigs == "" {
		return "", "The request is not signed: webhook-id, webhook-timestamp and webhook-signature are required."
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", "webhook-timestamp is not a Unix time in seconds."
	}
	now := h.now()
	sent := time.Unix(secs, 0)
	if sent.Before(now.Add(-webhookTolerance)) || sent.After(now.Add(webhookTolerance)) {
		return "", "webhook-timestamp is more than 5 minutes away from otpd's clock."
	}
	if !h.signed(id, ts, body, sigs) {
		return "", "The signature does not match any of hooks.supabase.secrets."
	}
	if !h.seen.add(id, now, sent.Add(webhookTolerance)) {
		return "", "This webhook-id was already delivered."
	}
	return id, ""
}

// signed reports whether one of the signatures of sigs ("v1,<base64>",
// separated by spaces; Supabase joins several with ", ") is the HMAC-SHA256
// of id.ts.body under one of the keys.
func (h *supabaseHook) signed(id, ts string, body []byte, sigs string) bool {
	var got [][]byte
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(strings.TrimSuffix(s, ","), ",")
		if !ok || version != "v1" {
			continue
		}
		if sig, err := base64.StdEncoding.DecodeString(b64); err == nil {
			got = append(got, sig)
		}
	}
	for _, key := range h.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(body)
		want := mac.Sum(nil)
		for _, sig := range got {
			if hmac.Equal(sig, want) {
				return true
			}
		}
	}
	return false
}

// plan reads a signed request into the DeliverCode calls it asks for: one,
// or two for a secure email change (a code to the current address and one
// to the new), or a refusal.
func (h *supabaseHook) plan(body []byte, ch otpv1.Channel, id string) ([]*otpv1.DeliverCodeRequest, *hookRefusal) {
	var req supabaseRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &hookRefusal{http.StatusBadRequest, "The request is not the JSON of Supabase Auth's hook."}
	}
	msg := func(to, code string, u otpv1.UsageType, part string) *otpv1.DeliverCodeRequest {
		return &otpv1.DeliverCodeRequest{
			Recipient:      to,
			Channel:        ch,
			UsageType:      u,
			Locale:         supabaseLocale(req.User.UserMetadata),
			ClientIp:       h.ignore.clientIP(req.Metadata.IPAddress),
			Code:           code,
			IdempotencyKey: webhookIdempotencyKey(id, part),
		}
	}
	if ch == otpv1.Channel_CHANNEL_SMS {
		to := req.SMS.Phone
		if to == "" && req.SMS.SMSType == "phone_change" {
			to = req.User.NewPhone
		}
		if to == "" {
			to = req.User.Phone
		}
		if to != "" && !strings.HasPrefix(to, "+") {
			to = "+" + to // Supabase stores phone numbers without "+"
		}
		u, ok := supabaseSMSTypes[req.SMS.SMSType]
		if !ok {
			u = otpv1.UsageType_USAGE_TYPE_GENERIC
		}
		return []*otpv1.DeliverCodeRequest{msg(to, req.SMS.OTP, u, "")}, nil
	}
	e := req.EmailData
	switch action := e.EmailActionType; {
	case action == "email_change" && e.TokenNew != "":
		// Secure email change: token for the current address, token_new
		// for the new one.
		return []*otpv1.DeliverCodeRequest{
			msg(req.User.Email, e.Token, otpv1.UsageType_USAGE_TYPE_USER_PERMISSION_VALIDATION, "current"),
			msg(req.User.NewEmail, e.TokenNew, otpv1.UsageType_USAGE_TYPE_BIND_NEW_IDENTIFIER, "new"),
		}, nil
	case action == "email_change":
		return []*otpv1.DeliverCodeRequest{msg(req.User.NewEmail, e.Token, otpv1.UsageType_USAGE_TYPE_BIND_NEW_IDENTIFIER, "")}, nil
	case strings.HasSuffix(action, "_notification"):
		return nil, &hookRefusal{http.StatusUnprocessableEntity, "otpd delivers one-time codes only: turn off Supabase's " + action + " email, or send it another way."}
	default:
		u, ok := supabaseEmailTypes[action]
		if !ok {
			return nil, &hookRefusal{http.StatusUnprocessableEntity, "Unknown email_action_type."}
		}
		return []*otpv1.DeliverCodeRequest{msg(req.User.Email, e.Token, u, "")}, nil
	}
}

// webhookIdempotencyKey is the idempotency key of a delivery asked by the
// request id: a hash, as webhook-id may be any string, and part tells the
// two messages of one request apart.
func webhookIdempotencyKey(id, part string) string {
	sum := sha256.Sum256([]byte(id))
	k := "supabase:" + hex.EncodeToString(sum[:16])
	if part != "" {
		k += ":" + part
	}
	return k
}

// supabaseLocale is the user's user_metadata.locale (or .language) when it
// is a string, else "" (the default locale): Supabase Auth sends no
// locale of its own.
func supabaseLocale(md map[string]any) string {
	for _, k := range []string{"locale", "language"} {
		if s, ok := md[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// supabaseField names a DeliverCodeRequest field as Supabase's request does.
func supabaseField(ch otpv1.Channel) func(string) string {
	return func(field string) string {
		switch {
		case field == "recipient" && ch == otpv1.Channel_CHANNEL_SMS:
			return "The phone number"
		case field == "recipient":
			return "The email address"
		case field == "code":
			return "The code"
		case field == "locale":
			return "user_metadata.locale"
		case field == "client_ip":
			return "metadata.ip_address"
		}
		return field
	}
}

// supabaseRefusal answers a refusal that Supabase Auth passes on to its
// user: 200, with the status and message in the body's error.
func supabaseRefusal(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, http.StatusOK, supabaseError(status, msg))
}

// supabaseAnswer answers status with the message in Supabase's error shape.
func supabaseAnswer(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, supabaseError(status, msg))
}

func supabaseError(status int, msg string) any {
	type hookError struct {
		HTTPCode int    `json:"http_code"`
		Message  string `json:"message"`
	}
	return struct {
		Error hookError `json:"error"`
	}{hookError{status, msg}}
}

// seenIDs remembers webhook ids until their timestamp leaves the
// tolerance window, after which the timestamp check refuses a replay.
type seenIDs struct {
	mu  sync.Mutex
	ids map[string]time.Time // id → when it may be forgotten
}

// add reports whether id is new, and remembers it until forget.
func (s *seenIDs) add(id string, now, forget time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.ids[id]; ok && now.Before(until) {
		return false
	}
	if len(s.ids) >= maxSeenWebhookIDs {
		for k, until := range s.ids {
			if !now.Before(until) {
				delete(s.ids, k)
			}
		}
		// Still full (only signed requests get here): forget any one; its
		// idempotency key still stops a second delivery.
		for k := range s.ids {
			if len(s.ids) < maxSeenWebhookIDs {
				break
			}
			delete(s.ids, k)
		}
	}
	s.ids[id] = forget
	return true
}
