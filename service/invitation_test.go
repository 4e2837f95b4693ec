package service_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

var invitation = otpv1.UsageType_USAGE_TYPE_ORGANIZATION_INVITATION

// inviteLink is an invitation link as Logto builds it; its token must
// reach the recipient and nothing else.
const inviteLink = "https://auth.example.com/invitation?token=s3cr3t-t0ken&org=acme"

// invitationTemplates writes an operator's email invitation template (en,
// the default locale) and returns the directory.
func invitationTemplates(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	files := map[string]string{
		"email/en/OrganizationInvitation.subject": "Join {{app_name}}",
		"email/en/OrganizationInvitation.html":    `<p><a href="{{link}}">Join {{app_name}}</a></p>`,
		"email/en/OrganizationInvitation.txt":     "Join {{app_name}}: {{link}}",
	}
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// TestDeliverInvitation checks that an invitation goes out with the link
// rendered from the operator's template, under the same send-side limits
// as a code (its own cooldown), and that the link stays out of logs and
// Redis.
func TestDeliverInvitation(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{templatesDir: invitationTemplates(t)})
	ctx := context.Background()
	// A code for the same recipient does not hold the invitation back.
	h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: email, UsageType: signIn, Code: "123456"})

	req := &otpv1.DeliverCodeRequest{Recipient: email, UsageType: invitation, Link: inviteLink, Locale: "fr"}
	resp, msg := h.deliver(t, req)
	if resp.GetProvider() != "primary" || resp.GetChannel() != otpv1.Channel_CHANNEL_EMAIL || resp.GetResendAfter() == nil {
		t.Errorf("DeliverCode = %v", resp)
	}
	want := otp.Content{
		Subject: "Join Acme",
		Text:    "Join Acme: " + inviteLink,
		HTML:    `<p><a href="https://auth.example.com/invitation?token=s3cr3t-t0ken&amp;org=acme">Join Acme</a></p>`,
	}
	if msg.UsageType != otp.OrganizationInvitation || msg.Link != inviteLink || msg.Code != "" || msg.Content != want {
		t.Errorf("delivered %+v, want an OrganizationInvitation with the link and content %+v", msg, want)
	}

	// The same limits as a code: the cooldown of the recipient and usage
	// type.
	_, err := h.client.DeliverCode(ctx, req)
	wantQuota(t, err, "resend_interval")

	if strings.Contains(h.logs.String(), "s3cr3t") {
		t.Error("logs contain the invitation link's token")
	}
	if !strings.Contains(h.logs.String(), "invitation delivered") {
		t.Errorf("logs lack the delivery: %s", h.logs.String())
	}
	for _, item := range dumpRedis(t, h.rdb) {
		if strings.Contains(item, "s3cr3t") || strings.Contains(item, "auth.example.com") {
			t.Errorf("redis item %q holds the link", item)
		}
	}
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "email", "provider": "primary", "usage_type": "organization_invitation", "result": "ok"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{organization_invitation, ok} = %v, want 1", got)
	}
}

// TestDeliverInvitationNoTemplate checks that an invitation without a
// template of the operator's for its channel is FAILED_PRECONDITION
// NO_TEMPLATE naming the files to add, refused before it counts against
// any limit or reaches a provider.
func TestDeliverInvitationNoTemplate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, dir, to, files string
	}{
		{"no templates.dir", "", email, "email/<locale>/OrganizationInvitation.subject and .html or .txt"},
		{"email only", invitationTemplates(t), phone, "sms/<locale>/OrganizationInvitation.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, harnessOptions{templatesDir: tc.dir})
			ctx := context.Background()
			keys := h.rdb.DBSize(ctx).Val()
			for range 2 { // the second is not held back by a cooldown
				_, err := h.client.DeliverCode(ctx, &otpv1.DeliverCodeRequest{Recipient: tc.to, UsageType: invitation, Link: inviteLink})
				info := detail[*errdetails.ErrorInfo](t, wantStatus(t, err, codes.FailedPrecondition))
				if info.GetReason() != "NO_TEMPLATE" || info.GetMetadata()["usage_type"] != "OrganizationInvitation" {
					t.Errorf("ErrorInfo = %v, want NO_TEMPLATE for OrganizationInvitation", info)
				}
				if msg := status.Convert(err).Message(); !strings.Contains(msg, "add "+tc.files+" to templates.dir") || strings.Contains(msg, "s3cr3t") {
					t.Errorf("message %q does not name %s (or quotes the link)", msg, tc.files)
				}
			}
			if n := h.rdb.DBSize(ctx).Val(); n != keys {
				t.Errorf("redis went from %d to %d keys: the refusal took a limit slot", keys, n)
			}
			if n := h.primary.Calls() + h.secondary.Calls(); n != 0 {
				t.Errorf("providers called %d times", n)
			}
			ch := "email"
			if tc.to == phone {
				ch = "sms"
			}
			if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": ch, "provider": "", "usage_type": "organization_invitation", "result": "permanent_error"}); got != 2 {
				t.Errorf("otpd_codes_sent_total{organization_invitation, permanent_error} = %v, want 2", got)
			}
		})
	}
}

// TestInvitationBadInput checks that a bad link, a code with an
// invitation, a link with a code, and an invitation through SendCode or
// VerifyCode are INVALID_ARGUMENT naming the field, never quoting the
// link, and send nothing.
func TestInvitationBadInput(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{templatesDir: invitationTemplates(t)})
	ctx := context.Background()
	inv := func(link string) *otpv1.DeliverCodeRequest {
		return &otpv1.DeliverCodeRequest{Recipient: email, UsageType: invitation, Link: link}
	}
	tooLong := "https://auth.example.com/i?token=s3cr3t" + strings.Repeat("a", 2048)
	for _, tc := range []struct {
		name  string
		req   *otpv1.DeliverCodeRequest
		field string
	}{
		{"no link", inv(""), "link"},
		{"too long", inv(tooLong), "link"},
		{"relative", inv("/invitation?token=s3cr3t"), "link"},
		{"no scheme", inv("auth.example.com/invitation?token=s3cr3t"), "link"},
		{"javascript", inv("javascript:alert('s3cr3t')"), "link"},
		{"ftp", inv("ftp://auth.example.com/s3cr3t"), "link"},
		{"no host", inv("https:///invitation?token=s3cr3t"), "link"},
		{"opaque", inv("https:auth.example.com/s3cr3t"), "link"},
		{"blank", inv("https://auth.example.com/i?token=s3cr3t x"), "link"},
		{"line break", inv("https://auth.example.com/i?token=s3cr3t\r\nBcc: x@example.com"), "link"},
		{"no-break space", inv("https://auth.example.com/i?token=s3cr3t\u00a0"), "link"},
		{"user info", inv("https://auth.example.com@evil.example/i?token=s3cr3t"), "link"},
		{"code with the link", &otpv1.DeliverCodeRequest{Recipient: email, UsageType: invitation, Link: inviteLink, Code: "123456"}, "code"},
		{"link with a code", &otpv1.DeliverCodeRequest{Recipient: email, UsageType: signIn, Link: inviteLink, Code: "123456"}, "link"},
	} {
		_, err := h.client.DeliverCode(ctx, tc.req)
		br := detail[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument))
		if got := br.GetFieldViolations()[0].GetField(); got != tc.field {
			t.Errorf("%s: BadRequest names %s, want %s", tc.name, got, tc.field)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: error %q quotes the link", tc.name, err)
		}
	}

	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: email, UsageType: invitation})
	wantDeliverOnly(t, "SendCode", err)
	_, err = h.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: email, UsageType: invitation, Code: "123456"})
	wantDeliverOnly(t, "VerifyCode", err)

	if n := h.primary.Calls() + h.secondary.Calls(); n != 0 {
		t.Fatalf("bad requests reached the providers %d times", n)
	}
	if strings.Contains(h.logs.String(), "s3cr3t") {
		t.Error("logs contain a link's token")
	}
	// The edges are accepted: http, a port, 2048 bytes, an IDN host.
	h.deliver(t, inv("http://localhost:3001/invitation?token=x"))
	h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: "a@example.com", UsageType: invitation,
		Link: "https://auth.example.com/i?t=" + strings.Repeat("a", 2048-len("https://auth.example.com/i?t="))})
	h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: "b@example.com", UsageType: invitation, Link: "HTTPS://bücher.example/einladung"})
}

func wantDeliverOnly(tb testing.TB, rpc string, err error) {
	tb.Helper()
	br := detail[*errdetails.BadRequest](tb, wantStatus(tb, err, codes.InvalidArgument))
	fv := br.GetFieldViolations()[0]
	if fv.GetField() != "usage_type" || !strings.Contains(fv.GetDescription(), "is for DeliverCode only") {
		tb.Errorf("%s of an invitation: BadRequest = %v, want usage_type is for DeliverCode only", rpc, br)
	}
}
