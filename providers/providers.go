// Package providers holds what every message provider shares: the Message a
// provider delivers, the Sender contract, the classified provider Error, and
// the Router that picks providers by channel and recipient and fails over
// between them.
//
// Vendor packages (console, twilio, tencent, mailgun, aliyundm) import this
// package; it never imports them. The registry that maps a configured type to
// a constructor lives in cmd/otpd.
package providers

import (
	"context"
	"time"
)

// Channel is how a message reaches its recipient.
type Channel string

// The channels otpd delivers on.
const (
	SMS   Channel = "sms"
	Email Channel = "email"
)

// UsageType is what a code is for, spelled as Logto spells it in connector
// configuration ("Register", "SignIn", "ForgotPassword", "Generic").
type UsageType string

// The usage types otpd sends codes for.
const (
	Register       UsageType = "Register"
	SignIn         UsageType = "SignIn"
	ForgotPassword UsageType = "ForgotPassword"
	Generic        UsageType = "Generic"
)

// UsageTypes lists every usage type otpd sends codes for, Generic last.
var UsageTypes = []UsageType{Register, SignIn, ForgotPassword, Generic}

// Content is a message rendered from otpd's own templates. Providers that
// have a template of their own for the usage type use theirs instead.
type Content struct {
	// Subject is the email subject; empty for SMS.
	Subject string
	// Text is the SMS body, or the plain-text part of an email.
	Text string
	// HTML is the HTML part of an email; empty for SMS.
	HTML string
}

// Message is one code to deliver.
type Message struct {
	// Channel is the channel the message goes out on.
	Channel Channel
	// To is the normalised recipient: an E.164 phone number or an email
	// address with a lower-cased domain. It is personal data: never log it
	// unmasked.
	To string
	// UsageType is what the code is for.
	UsageType UsageType
	// Locale is the BCP 47 tag the content was rendered in.
	Locale string
	// Code is the one-time code. It is a secret: never log it.
	Code string
	// AppName is the configured application name, for provider templates.
	AppName string
	// TTL is how long the code stays valid.
	TTL time.Duration
	// Content is the message rendered from otpd's templates.
	Content Content
	// VerificationID identifies the code in logs.
	VerificationID string
}

// Receipt is a provider's acknowledgement of a message.
type Receipt struct {
	// Provider is the configured name of the provider that accepted the
	// message.
	Provider string
	// MessageID is the provider's own identifier of the message, if it gives
	// one.
	MessageID string
}

// Sender delivers messages through one provider. Send must honour ctx's
// deadline, must not retry on its own (the Router does), and must return an
// *Error (or an error wrapping one) for every failure, so that the Router
// can tell a transient failure from a permanent one.
type Sender interface {
	Send(ctx context.Context, msg Message) (Receipt, error)
}

// UsageChecker is implemented by senders that can only serve some usage
// types, such as providers that need a template of their own. Start-up
// validation uses it to reject configurations that cannot serve a usage type.
type UsageChecker interface {
	// CanServe reports whether the sender can deliver msgs of usage type u
	// without otpd's own templates.
	CanServe(u UsageType) error
}

// Previewer is implemented by senders that can show what they would send
// without sending it. otpd -check prints one preview per provider and usage
// type.
type Previewer interface {
	// Preview returns, on one line, what Send would put on the wire for msg:
	// the text or template and its parameters, the code included (otpd
	// -check uses a sample code), and never a secret. An error means the
	// provider cannot serve msg.
	Preview(msg Message) (string, error)
}

// Describer is implemented by senders that can summarise their settings for
// otpd -check.
type Describer interface {
	// Describe returns the provider's settings on one line, with secrets
	// left out and access key IDs masked.
	Describe() string
}
