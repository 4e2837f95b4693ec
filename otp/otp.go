// Package otp holds the domain types every layer of otpd shares: the
// channel a code goes out on, what the code is for, the message a provider
// delivers and the provider's receipt. It imports nothing of otpd's own, so
// that templates, providers and the service can all depend on it without
// depending on each other.
package otp

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

// Channels lists the channels otpd delivers on.
var Channels = []Channel{SMS, Email}

// UsageType is what a code is for, spelled as Logto spells it in connector
// configuration ("Register", "SignIn", "ForgotPassword", "Generic", ...).
type UsageType string

// The usage types otpd sends codes for: Logto's eight code-bearing
// template types.
const (
	Register       UsageType = "Register"
	SignIn         UsageType = "SignIn"
	ForgotPassword UsageType = "ForgotPassword"
	Generic        UsageType = "Generic"
	// UserPermissionValidation confirms a signed-in user before a
	// sensitive change.
	UserPermissionValidation UsageType = "UserPermissionValidation"
	// BindNewIdentifier adds an email address or phone number to an
	// account.
	BindNewIdentifier UsageType = "BindNewIdentifier"
	// MfaVerification is a second factor at sign-in.
	MfaVerification UsageType = "MfaVerification"
	// BindMfa sets up a second factor.
	BindMfa UsageType = "BindMfa"
)

// OrganizationInvitation is Logto's invitation to join an organization: a
// message that carries a link (Message.Link), not a code. It is not in
// UsageTypes, which lists the code-bearing types: it has no Generic
// fallback (Generic says "your code"), otpd ships no template for it, and
// only DeliverCode sends it.
const OrganizationInvitation UsageType = "OrganizationInvitation"

// UsageTypes lists every usage type otpd sends codes for, Generic last.
// Templates of every kind (otpd's own and providers') fall back to
// Generic for a usage type that has none of its own, so a provider or a
// locale with only a Generic template serves all of them.
var UsageTypes = []UsageType{
	Register, SignIn, ForgotPassword,
	UserPermissionValidation, BindNewIdentifier, MfaVerification, BindMfa,
	Generic,
}

// Content is a message rendered from otpd's own templates. Providers that
// have a template of their own for the usage type use theirs instead.
type Content struct {
	// Subject is the email subject; empty for SMS.
	Subject string
	// Text is the SMS body, or the plain-text part of an email.
	Text string
	// HTML is the HTML part of an email; empty for SMS.
	HTML string
	// Autofill holds, for an SMS that carries a code when SMS autofill is
	// configured (templates.webotp_domain, templates.android_app_hash),
	// the lines that end Text: the app hash and the WebOTP line
	// "@example.com #123456". A provider that sends a text of its own
	// instead of Text (a Logto template) appends them to it
	// (templates.AppendAutofill). It holds the code: never log it.
	Autofill string
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
	// Code is the one-time code. It is a secret: never log it. It is
	// empty for OrganizationInvitation.
	Code string
	// Link is the invitation link of an OrganizationInvitation, empty for
	// every other usage type. It is not a secret as a code is, but it may
	// carry the invitation's token: never log it.
	Link string
	// AppName is the configured application name, for provider templates.
	AppName string
	// TTL is how long the code stays valid.
	TTL time.Duration
	// Content is the message rendered from otpd's templates.
	Content Content
	// VerificationID identifies the code in logs.
	VerificationID string
	// ClientIP is the end user's address as the caller gave it (client_ip),
	// or "": for providers whose API takes it (Logto's HTTP connectors'
	// "ip"). It is personal data: never log it.
	ClientIP string
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

// entryKey is the context key of a call's entry point.
type entryKey struct{}

// EntryGRPC is the entry point of a call that carries none: gRPC.
const EntryGRPC = "grpc"

// WithEntry returns ctx for a call that came in through entry: "grpc",
// "connect", "grpc_web", or a hook ("logto", "supabase"). Metrics carry
// it as their entry label.
func WithEntry(ctx context.Context, entry string) context.Context {
	return context.WithValue(ctx, entryKey{}, entry)
}

// Entry is the entry point of the call of ctx: EntryGRPC unless WithEntry
// set another.
func Entry(ctx context.Context) string {
	if e, ok := ctx.Value(entryKey{}).(string); ok {
		return e
	}
	return EntryGRPC
}
