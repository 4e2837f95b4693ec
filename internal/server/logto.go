package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"golang.org/x/text/language"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// The paths of Logto's HTTP connectors' endpoint on listen.api.
const (
	logtoSMSPath   = "/hooks/logto/sms"
	logtoEmailPath = "/hooks/logto/email"
)

// logtoTypes maps Logto's TemplateType to otpd's usage types: the eight
// types that carry a code, and OrganizationInvitation, which carries a
// link (payload.link) instead.
var logtoTypes = map[string]otpv1.UsageType{
	"SignIn":                   otpv1.UsageType_USAGE_TYPE_SIGN_IN,
	"Register":                 otpv1.UsageType_USAGE_TYPE_REGISTER,
	"ForgotPassword":           otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD,
	"Generic":                  otpv1.UsageType_USAGE_TYPE_GENERIC,
	"UserPermissionValidation": otpv1.UsageType_USAGE_TYPE_USER_PERMISSION_VALIDATION,
	"BindNewIdentifier":        otpv1.UsageType_USAGE_TYPE_BIND_NEW_IDENTIFIER,
	"MfaVerification":          otpv1.UsageType_USAGE_TYPE_MFA_VERIFICATION,
	"BindMfa":                  otpv1.UsageType_USAGE_TYPE_BIND_MFA,
	"OrganizationInvitation":   otpv1.UsageType_USAGE_TYPE_ORGANIZATION_INVITATION,
}

// logtoRequest is the body of Logto's @logto/connector-http-sms and
// @logto/connector-http-email (SendMessageData). Other payload keys
// (application, organization, inviter, user) are ignored.
type logtoRequest struct {
	To      string `json:"to"`
	Type    string `json:"type"`
	Payload struct {
		Code      string `json:"code"`
		Link      string `json:"link"` // OrganizationInvitation's, instead of a code
		Locale    string `json:"locale"`
		UILocales string `json:"uiLocales"`
	} `json:"payload"`
	IP string `json:"ip"`
}

// logtoHook serves POST /hooks/logto/{sms,email}: it turns Logto's request
// into a DeliverCode call made in process (see deliverer), with the
// request's Authorization header (and its TLS client certificate) as the
// caller's credentials and "logto" as the entry. Its answers are what
// Logto shows the user: short sentences, never the code or a provider's
// text.
type logtoHook struct {
	d      deliverer
	ignore ipFilter
}

func newLogtoHook(rpc http.Handler, hooks Hooks) *logtoHook {
	return &logtoHook{d: newDeliverer(rpc, entryLogto, hooks.SendTimeout), ignore: hooks.Logto.ignored()}
}

func (h *logtoHook) handler(ch otpv1.Channel) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			logtoAnswer(w, http.StatusMethodNotAllowed, "Use POST.")
			return
		}
		creds := http.Header{"Authorization": r.Header.Values("Authorization")}
		msg, refusal := h.parse(r, w, ch)
		var err error
		if refusal != nil {
			err = h.d.refused(r.Context(), r, ch, creds)
			if err == nil {
				logtoAnswer(w, refusal.status, refusal.msg)
				return
			}
		}
		var resp *otpv1.DeliverCodeResponse
		if err == nil {
			resp, err = h.d.deliver(r.Context(), r, msg, creds)
		}
		if err != nil {
			status, retry, text := hookError(err, logtoField)
			if noTemplate(err) {
				// Only an invitation lacks a template: the operator's
				// templates.dir has none for it.
				text = "No organization invitation template is configured: add " + invitationFiles(ch) + " to templates.dir."
			}
			if status == http.StatusUnauthorized {
				text = "Unauthorized: the connector's authorization must be \"Bearer <token>\" with a token otpd accepts."
			}
			if retry > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(retry))
			}
			logtoAnswer(w, status, text)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			VerificationID string `json:"verification_id"`
			Provider       string `json:"provider"`
		}{resp.GetVerificationId(), resp.GetProvider()})
	})
}

// parse reads Logto's request into the DeliverCode request, or refuses it.
func (h *logtoHook) parse(r *http.Request, w http.ResponseWriter, ch otpv1.Channel) (*otpv1.DeliverCodeRequest, *hookRefusal) {
	var body logtoRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, hookMaxBodyBytes))
	if err := dec.Decode(&body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &hookRefusal{http.StatusRequestEntityTooLarge, "The request is too large."}
		}
		return nil, &hookRefusal{http.StatusBadRequest, "The request is not the JSON of Logto's HTTP connector."}
	}
	usage, ok := logtoTypes[body.Type]
	if !ok {
		return nil, &hookRefusal{http.StatusBadRequest, "Unknown message type."}
	}
	to := body.To
	if ch == otpv1.Channel_CHANNEL_SMS && to != "" && !strings.HasPrefix(to, "+") {
		to = "+" + to // Logto's phone numbers are digits only
	}
	return &otpv1.DeliverCodeRequest{
		Recipient: to,
		Channel:   ch,
		UsageType: usage,
		Locale:    logtoLocale(body.Payload.Locale, body.Payload.UILocales),
		ClientIp:  h.ignore.clientIP(body.IP),
		Code:      body.Payload.Code,
		Link:      body.Payload.Link,
	}, nil
}

// noTemplate reports whether err is DeliverCode's FAILED_PRECONDITION
// with reason NO_TEMPLATE.
func noTemplate(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition {
		return false
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok && info.GetReason() == "NO_TEMPLATE" {
				return true
			}
		}
	}
	return false
}

// invitationFiles names the template files an invitation on ch needs.
func invitationFiles(ch otpv1.Channel) string {
	if ch == otpv1.Channel_CHANNEL_SMS {
		return "sms/<locale>/OrganizationInvitation.txt"
	}
	return "email/<locale>/OrganizationInvitation.subject and .html or .txt"
}

// logtoLocale is payload.locale, else the first well-formed tag of
// payload.uiLocales (OIDC ui_locales: space-separated), else "" (otpd's
// default locale).
func logtoLocale(locale, uiLocales string) string {
	if locale != "" {
		return locale
	}
	for _, tag := range strings.Fields(uiLocales) {
		if _, err := language.Parse(tag); err == nil {
			return tag
		}
	}
	return ""
}

// logtoField names a DeliverCodeRequest field as Logto's request does.
func logtoField(field string) string {
	switch field {
	case "recipient":
		return "to"
	case "code":
		return "payload.code"
	case "link":
		return "payload.link"
	case "locale":
		return "payload.locale"
	case "client_ip":
		return "ip"
	case "usage_type":
		return "type"
	}
	return field
}

// logtoAnswer writes {"message": msg}, the body Logto shows its user.
func logtoAnswer(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Message string `json:"message"`
	}{msg})
}
