package service

import (
	"context"
	"errors"
	"time"
)

// ErrStoreUnavailable marks a store failure that is worth retrying later:
// the store cannot be reached, timed out, or is full, loading, failing over
// or read-only. The service answers every store error with UNAVAILABLE.
var ErrStoreUnavailable = errors.New("store unavailable")

// ErrNotApplied marks a store error after which the store is sure that
// nothing changed: the call was never sent, or the server refused it before
// running it (OOM, LOADING, READONLY, MASTERDOWN, ...). A store error
// without it may have been applied with its answer lost: the service then
// retries the call with the same ids (every call is idempotent per id) and,
// when it gives up, undoes it.
var ErrNotApplied = errors.New("not applied")

// ErrUndone is the answer to BeginSend or Verify for an id whose undo
// already ran (AbortSend with Uncount, UndoVerify): a late copy of a call
// the service gave up on, which changes nothing.
var ErrUndone = errors.New("call already undone")

// Recipient is a recipient as a store knows it: by keyed hashes, never by
// its address.
type Recipient struct {
	// ID is the recipient's keyed hash under the current secret.
	ID string
	// Bucket is a short hash of the recipient that no secret enters, so it
	// is the same under every secret: a store keeps the recipient's state
	// under every secret together (on Redis Cluster, in one hash slot), so
	// that one atomic step can move it from a previous secret's ids to the
	// current one's. It says nothing usable about the recipient: one of
	// 4096 buckets, shared with every other recipient in it.
	Bucket string
	// Previous holds the recipient's ids under each previous secret
	// (Config.PreviousSecrets, in order); empty when none is configured.
	// Before deciding a call, a store moves what it finds under them to
	// ID, merged with what ID holds: live codes, cooldowns, windows and
	// idempotency records carry over a rotation of the secret.
	Previous []string
}

// IdempotencyKey is a caller's idempotency key as a store knows it: its
// keyed hash under the current secret and, one per Recipient.Previous,
// under each previous secret. The zero value is no key.
type IdempotencyKey struct {
	ID       string
	Previous []string
}

// Slot is one event to count against a shared sliding-window limit, such as
// the per-IP or per-country send limit.
type Slot struct {
	// Limit names the limit for errors and metrics ("per_ip").
	Limit string
	// Key identifies the counted subject, already hashed where it is
	// personal data ("ip:3kT..."). Stores derive their own key from it.
	Key string
	// Bucket, when set, is a hash of the subject that no secret enters,
	// as Recipient.Bucket: a keyed Key and its Previous keys share it.
	// Empty for a subject that is not keyed (a country calling code).
	Bucket string
	// Previous holds Key under each previous secret: a store moves what
	// it finds under them to Key first, as for a Recipient.
	Previous []string
	// Window is the limit. For a conversion slot, Window.Window is the
	// period counted and Count is unused.
	Window Window
	// Conversion, when set, makes the slot the low-conversion rule's
	// (fraud.conversion) instead of a window of Count events: the slot
	// holds the subject's unverified sends (a send counts until
	// CreditSlots credits it, a release removes it, or it leaves the
	// window) beside a count of its verified ones, and is full while
	// unverified >= max(MinUnverified, Ratio × verified). A store keeps
	// the verified count next to the slot's own state, under the same
	// Key, Bucket and Previous.
	Conversion *ConversionRule
}

// ConversionRule is the threshold of a conversion slot.
type ConversionRule struct {
	MinUnverified int
	Ratio         float64
	// Record marks a slot that is never full: over the threshold the send
	// is taken all the same and SendResult.Over names the slot (the rule
	// in fraud.mode record_only, or for a sender fraud.always_allow
	// names).
	Record bool
}

// LateCopyTTL is how long a copy of a call can still reach a store after
// its sender gave up on it: longer than Linux keeps retransmitting a
// request written before the network failed (about 15 minutes with
// tcp_retries2 = 15). An undone call's tombstone lives that long, and so
// does a wrong attempt's mark when no verify window keeps it: a re-run
// of the attempt (its answer lost) answers MISMATCH and counts nothing.
const LateCopyTTL = 15 * time.Minute

// ConversionBuckets is how many parts a conversion slot's window is cut
// into for its verified count: a verification leaves the count when its
// part of the window has passed, up to Window/ConversionBuckets late.
const ConversionBuckets = 24

// SlotDenial says which slot was full and when it frees up.
type SlotDenial struct {
	Limit      string
	RetryAfter time.Duration
}

// SendStatus is the outcome of BeginSend.
type SendStatus int

// The outcomes of BeginSend.
const (
	// SendAccepted: the code is stored (unless SendParams.NoCode), the
	// cooldown and the per-recipient count are taken.
	SendAccepted SendStatus = iota
	// SendCooldown: the resend interval has not passed; nothing changed.
	SendCooldown
	// SendRecipientLimited: the per-recipient window is full; nothing changed.
	SendRecipientLimited
	// SendReplay: the idempotency key already has an answer, in Replay.
	SendReplay
	// SendInProgress: another call with the same idempotency key is still
	// delivering.
	SendInProgress
	// SendIdempotencyMismatch: the idempotency key was used for a different
	// usage type.
	SendIdempotencyMismatch
	// SendSlotLimited: one of the shared slots is full, named by
	// SendResult.Limit; nothing changed.
	SendSlotLimited
)

// SendParams is everything BeginSend checks and stores, in one atomic step.
type SendParams struct {
	// Recipient is the recipient; every key of one recipient, under every
	// secret, shares its Bucket as a hash tag.
	Recipient Recipient
	// Usage is the usage type's key ("sign_in").
	Usage string
	// CodeHash is the keyed hash of the new code, never empty; unused
	// with NoCode.
	CodeHash []byte
	// NoCode marks a delivery of a code the caller generated (DeliverCode):
	// BeginSend checks and takes the limits, the cooldown and the
	// idempotency record exactly as for any send, but stores no code and
	// leaves a live code of the recipient and usage type (from an earlier
	// SendCode) alone, so that nothing verifies the delivered code. Run
	// again after its answer was lost, it recognises its own cooldown,
	// per-recipient count or idempotency record.
	NoCode bool
	// VerificationID identifies this code; it is also the member counted in
	// windows, so that a release removes exactly this send. BeginSend is
	// idempotent per VerificationID: run again after its answer was lost,
	// it answers SendAccepted while this id's code is stored, and counts
	// nothing twice.
	VerificationID string
	// Now is the caller's clock. Stores that keep time themselves (Redis)
	// use their own clock moved by the caller's offset from its local
	// clock, so that replicas whose machine clocks differ agree.
	Now         time.Time
	TTL         time.Duration
	MaxAttempts int
	// KeepPrevious is how many earlier codes of the recipient and usage
	// type stay valid next to the new one (code.keep_previous), each until
	// its own expiry, all sharing the live code's attempt counter. 0
	// replaces the old code. Codes whose attempts are used up, that were
	// consumed or that expired are never kept: the new code then starts
	// afresh, with every attempt.
	KeepPrevious int
	// Cooldown is the resend interval; 0 disables it.
	Cooldown     time.Duration
	PerRecipient Window
	// IdempotencyKey is the caller's idempotency key, or the zero value.
	IdempotencyKey IdempotencyKey
	// Fingerprint identifies the request for an idempotency key, so that a
	// key reused for another request is caught.
	Fingerprint string
	// PendingTTL bounds how long an unfinished idempotent send blocks
	// retries with the same key.
	PendingTTL time.Duration
	// Credit is stored with the code (never with NoCode) and returned by
	// the Verify that consumes it (VerifyResult.Credit): the subject of
	// the send's client-IP conversion slot, so that the service can
	// credit the send there. Empty when there is none.
	Credit string
	// Slots are the shared limits (per IP, per country, the conversion
	// rule's) the send counts against, taken with it or not at all: they are checked after the
	// idempotency record and before the cooldown and the per-recipient
	// window, and taken only when the send is accepted.
	Slots []Slot
}

// SendResult is what BeginSend decided.
type SendResult struct {
	Status SendStatus
	// RetryAfter is set for SendCooldown, SendRecipientLimited and
	// SendSlotLimited.
	RetryAfter time.Duration
	// Limit names the full slot for SendSlotLimited.
	Limit string
	// Replay is the stored answer for SendReplay.
	Replay []byte
	// Over names, for SendAccepted, the first conversion slot with Record
	// set that was over its threshold: the send was taken anyway.
	Over string
}

// AbortParams identifies a send to undo: one whose delivery failed
// everywhere, or one whose BeginSend outcome is unknown.
type AbortParams struct {
	Recipient      Recipient
	Usage          string
	VerificationID string
	// CodeHash is the hash of the send's code (empty for a delivery): a
	// newer send may have pushed it down among the kept codes
	// (SendParams.KeepPrevious), where the abort finds it by its hash.
	CodeHash       []byte
	IdempotencyKey IdempotencyKey
	// Uncount also removes the send from the per-recipient window: its
	// outcome was unknown and nothing was delivered, so it must not count
	// against the user.
	Uncount bool
	// Tombstone is how long a BeginSend for VerificationID that arrives
	// after the abort (a copy queued in a stalled store) is refused with
	// ErrUndone; 0 leaves no tombstone.
	Tombstone time.Duration
	// Now is the caller's clock, for stores that keep time by it.
	Now time.Time
}

// VerifyStatus is the outcome of Verify.
type VerifyStatus int

// The outcomes of Verify.
const (
	VerifyOK VerifyStatus = iota
	VerifyMismatch
	VerifyExpired
	VerifyTooManyAttempts
	// VerifyRateLimited: the recipient's verify window is full; nothing
	// changed.
	VerifyRateLimited
)

// VerifyParams is everything Verify checks, in one atomic step.
type VerifyParams struct {
	Recipient Recipient
	Usage     string
	CodeHash  []byte
	// PreviousCodeHashes holds the code's hash under each previous secret,
	// one per Recipient.Previous: a code stored under one of them verifies
	// too.
	PreviousCodeHashes [][]byte
	// Now is the caller's clock, as SendParams.Now.
	Now time.Time
	// PerRecipient limits wrong attempts per recipient across codes.
	PerRecipient Window
	// PerIP, when set, limits wrong attempts per client IP across
	// recipients: a full window refuses before the code is looked at, and
	// only a wrong code counts.
	PerIP *Slot
	// AttemptID identifies this attempt: the member counted in windows,
	// and what makes Verify idempotent. Run again after its answer was
	// lost, Verify answers what it first decided: VerifyOK again when this
	// attempt consumed the code, VerifyMismatch without counting twice.
	AttemptID string
	// Grace is how long a consumed code is kept, marked as consumed, so
	// that a re-run of its attempt and UndoVerify still find it.
	Grace time.Duration
}

// VerifyResult is what Verify decided.
type VerifyResult struct {
	Status            VerifyStatus
	AttemptsRemaining int
	// RetryAfter is set for VerifyRateLimited.
	RetryAfter time.Duration
	// ByIP is set for VerifyRateLimited when the full window is PerIP's,
	// not the recipient's.
	ByIP bool
	// VerificationID and Credit are set for VerifyOK: the verification
	// id of the latest send of the consumed code's record and what that
	// send stored as SendParams.Credit.
	VerificationID string
	Credit         string
}

// UndoVerifyParams identifies a verification whose outcome is unknown.
type UndoVerifyParams struct {
	Recipient Recipient
	Usage     string
	AttemptID string
	Now       time.Time
	// Tombstone is how long a Verify for AttemptID that arrives after the
	// undo is refused with ErrUndone.
	Tombstone time.Duration
}

// CodeParams names the code of a recipient and usage type, for
// CancelCode and CodeStatus.
type CodeParams struct {
	Recipient Recipient
	Usage     string
	// Now is the caller's clock, as SendParams.Now.
	Now time.Time
}

// CodeStatus describes the code of a recipient and usage type.
type CodeStatus struct {
	// Live is set while a code verifies: sent, not expired, not consumed,
	// attempts left.
	Live bool
	// ExpiresAt is when the latest live code expires; zero when none is
	// live.
	ExpiresAt time.Time
	// AttemptsRemaining is how many wrong codes the live codes still
	// allow, together; 0 when none is live.
	AttemptsRemaining int
	// ValidCodes is how many codes verify now: the latest and the earlier
	// ones kept (SendParams.KeepPrevious) that have not expired.
	ValidCodes int
	// ResendAfter is when the resend cooldown ends; zero when it does not
	// run.
	ResendAfter time.Time
}

// Store keeps codes and rate-limit state. Every method is one atomic
// check-and-update: concurrent calls behave as if run one after another.
// Every method is idempotent per id (verification id, attempt id, slot
// member): run again after its answer was lost, it answers what its first
// run did. Errors are marked ErrStoreUnavailable and ErrNotApplied as they
// apply. Stores never see a plaintext code or recipient.
//
// A rotated secret changes every id but no bucket: each method that
// changes a recipient's or a slot's state first moves, in the same atomic
// step, what the previous ids hold (Recipient.Previous, Slot.Previous) to
// the current ones, merging where both hold state; LookupSend, which
// changes nothing, reads under every id. With no previous ids this costs
// nothing.
type Store interface {
	// TakeSlots counts member against every slot, all or nothing: when one
	// slot is full none is taken and the denial says which. A slot that
	// already holds member counts as taken (a re-run takes nothing twice).
	TakeSlots(ctx context.Context, now time.Time, member string, slots []Slot) (*SlotDenial, error)
	// ReleaseSlots removes member from the slots again.
	ReleaseSlots(ctx context.Context, member string, slots []Slot) error
	// CreditSlots credits a verified send to conversion slots: member
	// leaves each slot's unverified sends and, only where it was there,
	// the slot's verified count grows by one, so that a credit run again
	// counts once. It moves a slot's state from its Previous keys first.
	CreditSlots(ctx context.Context, now time.Time, member string, slots []Slot) error
	// BeginSend checks the idempotency key, the shared slots, the cooldown
	// and the per-recipient window, and when all pass stores the new code
	// (replacing the old one, or keeping up to KeepPrevious live ones
	// beside it; none with NoCode), takes the cooldown and
	// counts the send in its windows; otherwise it changes nothing. After an error the slots
	// may be held (the answer can be lost after the store acted): the
	// caller releases them with ReleaseSlots.
	BeginSend(ctx context.Context, p SendParams) (SendResult, error)
	// LookupSend reads an idempotency record without changing anything:
	// SendReplay with the answer, SendInProgress, SendIdempotencyMismatch,
	// or SendAccepted when there is no record.
	LookupSend(ctx context.Context, r Recipient, key IdempotencyKey, fingerprint string) (SendResult, error)
	// CompleteSend stores the answer of an idempotent send for ttl.
	CompleteSend(ctx context.Context, r Recipient, key IdempotencyKey, answer []byte, ttl time.Duration) error
	// AbortSend undoes what BeginSend stored for a send whose delivery
	// failed or whose outcome is unknown: the code, the cooldown and a
	// pending idempotency key (each only while it is this send's; the
	// codes kept beside the send's code stay valid, and its code is found
	// among the kept ones too, by CodeHash, when a newer send pushed it
	// there), and with
	// Uncount its count in the per-recipient window. It leaves a tombstone
	// that turns a later BeginSend for the same id into ErrUndone. The
	// shared slots are released with ReleaseSlots.
	AbortSend(ctx context.Context, p AbortParams) error
	// Verify checks a code: rate limits, no live code → expired, attempts
	// used up → too many attempts, wrong code → count it, right code →
	// consume it.
	Verify(ctx context.Context, p VerifyParams) (VerifyResult, error)
	// UndoVerify undoes a verification whose outcome is unknown (its
	// caller was told UNAVAILABLE, so nobody was told OK): a code this
	// attempt consumed is live again until it expires. A wrong code it
	// counted stays counted. It leaves a tombstone that turns a later
	// Verify for the same attempt into ErrUndone.
	UndoVerify(ctx context.Context, p UndoVerifyParams) error
	// CancelCode kills every live code of the recipient and usage type,
	// kept ones included, and a consumed one so that no undo brings it
	// back; the cooldown and the windows stay. It reports whether a live
	// code was there. Run again, it changes nothing and reports false.
	CancelCode(ctx context.Context, p CodeParams) (bool, error)
	// CodeStatus reads the state of the recipient's code and cooldown for
	// the usage type, under every secret, and changes nothing.
	CodeStatus(ctx context.Context, p CodeParams) (CodeStatus, error)
	// Ping reports whether the store takes writes now: an unreachable
	// store fails it, and so does one that refuses writes (full, read-only,
	// loading), so that health turns NOT_SERVING for both.
	Ping(ctx context.Context) error
}
