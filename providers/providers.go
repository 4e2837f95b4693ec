// Package providers holds what every message provider shares: the Sender
// contract, the classified provider Error, and the Router that picks
// providers by channel and recipient and fails over between them. The
// message itself is otp.Message.
//
// Vendor packages (console, twilio, tencent, mailgun, aliyundm) import this
// package; it never imports them. The registry that maps a configured type
// to a constructor is internal/registry.
package providers

import (
	"context"

	"github.com/otpd/otpd/otp"
)

// Sender delivers messages through one provider. Send must honour ctx's
// deadline, must not retry on its own (the Router does), and must return an
// *Error (or an error wrapping one) for every failure, so that the Router
// can tell a transient failure from a permanent one.
type Sender interface {
	Send(ctx context.Context, msg otp.Message) (otp.Receipt, error)
}

// UsageChecker is implemented by senders that can only serve some usage
// types, such as providers that need a template of their own. Start-up
// validation uses it to reject configurations that cannot serve a usage type.
type UsageChecker interface {
	// CanServe reports whether the sender can deliver msgs of usage type u
	// without otpd's own templates.
	CanServe(u otp.UsageType) error
}

// Previewer is implemented by senders that can show what they would send
// without sending it. otpd -check prints one preview per provider and usage
// type.
type Previewer interface {
	// Preview returns, on one line, what Send would put on the wire for msg:
	// the text or template and its parameters, the code included (otpd
	// -check uses a sample code), and never a secret. An error means the
	// provider cannot serve msg.
	Preview(msg otp.Message) (string, error)
}

// Describer is implemented by senders that can summarise their settings for
// otpd -check.
type Describer interface {
	// Describe returns the provider's settings on one line, with secrets
	// left out and access key IDs masked.
	Describe() string
}

// Texter is implemented by SMS senders that send a free text: the one
// rendered from otpd's templates (otp.Message.Content.Text) or one of
// their own, which must end with otp.Content.Autofill
// (templates.AppendAutofill). otpd -check measures the text (encoding,
// bytes, segments) and checks its SMS autofill lines; an SMS sender that is
// no Texter (one that sends a template ID with parameters, or the code
// alone) cannot carry them, and -check warns.
type Texter interface {
	// Text returns the SMS text Send would send for msg, and the name of
	// the provider's own template it comes from, or "" when it is
	// msg.Content.Text.
	Text(msg otp.Message) (text, template string, err error)
}
