package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/otpd/otpd/internal/errtest"
	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers"
)

var (
	anyChannel   = otpv1.Channel_CHANNEL_UNSPECIFIED
	smsChannel   = otpv1.Channel_CHANNEL_SMS
	emailChannel = otpv1.Channel_CHANNEL_EMAIL
)

func TestParseRecipient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		channel otpv1.Channel
		want    recipient // zero when refused
		// wantField is the field of the violation when refused.
		wantField string
	}{
		// Phone numbers.
		{"China mobile", "+8613800138000", anyChannel, recipient{otp.SMS, "+8613800138000", "86"}, ""},
		{"UK landline", "+442071838750", anyChannel, recipient{otp.SMS, "+442071838750", "44"}, ""},
		{"US", "+14155550123", anyChannel, recipient{otp.SMS, "+14155550123", "1"}, ""},
		{"Germany mobile", "+4915123456789", anyChannel, recipient{otp.SMS, "+4915123456789", "49"}, ""},
		{"France mobile", "+33612345678", anyChannel, recipient{otp.SMS, "+33612345678", "33"}, ""},
		{"spaces", "+86 138 0013 8000", anyChannel, recipient{otp.SMS, "+8613800138000", "86"}, ""},
		{"dashes", "+1-415-555-0123", anyChannel, recipient{otp.SMS, "+14155550123", "1"}, ""},
		{"parentheses and dots", "+1 (415) 555.0123", anyChannel, recipient{otp.SMS, "+14155550123", "1"}, ""},
		{"phone on sms channel", "+14155550123", smsChannel, recipient{otp.SMS, "+14155550123", "1"}, ""},
		{"no plus", "8613800138000", anyChannel, recipient{}, "recipient"},
		{"no plus on sms channel", "14155550123", smsChannel, recipient{}, "recipient"},
		{"too short", "+1415", anyChannel, recipient{}, "recipient"},
		{"plus only", "+", anyChannel, recipient{}, "recipient"},
		{"letters", "+1415555O123", anyChannel, recipient{}, "recipient"},
		{"vanity number", "+1-800-FLOWERS", anyChannel, recipient{}, "recipient"},
		{"non-ASCII digits", "+٨٦١٣٨٠٠١٣٨٠٠٠", anyChannel, recipient{}, "recipient"},
		{"invalid for the country", "+1 000 555 0123", anyChannel, recipient{}, "recipient"},
		{"unassigned country code", "+999123456789", anyChannel, recipient{}, "recipient"},
		{"too long", "+" + strings.Repeat("1", 300), anyChannel, recipient{}, "recipient"},

		// Email addresses.
		{"email", "jane@example.com", anyChannel, recipient{otp.Email, "jane@example.com", ""}, ""},
		{"domain lower-cased, local part kept", "Jane.Doe@Example.COM", anyChannel, recipient{otp.Email, "Jane.Doe@example.com", ""}, ""},
		{"plus addressing", "jane+otp@mail.example.co.uk", anyChannel, recipient{otp.Email, "jane+otp@mail.example.co.uk", ""}, ""},
		{"email on email channel", "JANE@EXAMPLE.ORG", emailChannel, recipient{otp.Email, "JANE@example.org", ""}, ""},
		{"display name", "Jane <jane@example.com>", anyChannel, recipient{}, "recipient"},
		{"space inside", "jane doe@example.com", anyChannel, recipient{}, "recipient"},
		{"leading space", " jane@example.com", emailChannel, recipient{}, "recipient"},
		{"trailing space", "jane@example.com ", emailChannel, recipient{}, "recipient"},
		{"domain without a dot", "jane@localhost", anyChannel, recipient{}, "recipient"},
		{"domain with a trailing dot", "jane@example.com.", anyChannel, recipient{}, "recipient"},
		{"two at signs", "a@b@c", anyChannel, recipient{}, "recipient"},
		{"IP literal", "jane@[192.0.2.1]", anyChannel, recipient{}, "recipient"},
		{"IPv6 literal", "jane@[IPv6:2001:db8::1]", anyChannel, recipient{}, "recipient"},
		{"bare IP address as domain", "jane@192.0.2.1", anyChannel, recipient{}, "recipient"},
		{"domain label starting with a hyphen", "jane@-example.com", anyChannel, recipient{}, "recipient"},
		{"underscore in the domain", "jane@exa_mple.com", anyChannel, recipient{}, "recipient"},
		{"numeric top-level label", "jane@example.123", anyChannel, recipient{}, "recipient"},
		{"no local part", "@example.com", anyChannel, recipient{}, "recipient"},
		{"no domain", "jane@", anyChannel, recipient{}, "recipient"},
		{"comment", "jane@example.com (Jane)", anyChannel, recipient{}, "recipient"},

		// Channels.
		{"empty", "", anyChannel, recipient{}, "recipient"},
		{"neither phone nor email", "jane", anyChannel, recipient{}, "recipient"},
		{"phone on email channel", "+14155550123", emailChannel, recipient{}, "recipient"},
		{"email on sms channel", "jane@example.com", smsChannel, recipient{}, "recipient"},
		{"unknown channel", "+14155550123", otpv1.Channel(7), recipient{}, "channel"},
		{"invalid UTF-8", "jane@exa\xffmple.com", anyChannel, recipient{}, "recipient"},
	}
	// Every case three times: parsed, then through a cache shared by all
	// cases (a miss, then a hit), which must answer the same, refusals
	// word for word.
	cache := newPhoneCache(defaultPhoneCacheSize)
	parsers := []struct {
		name  string
		phone phoneParser
	}{{"parsed", parsePhone}, {"cache miss", cache.parse}, {"cache hit", cache.parse}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var first []*errdetails.BadRequest_FieldViolation
			for i, p := range parsers {
				var v violations
				got, ok := parseRecipientWith(tt.raw, tt.channel, &v, p.phone)
				if i == 0 {
					first = v.list
				} else if fmt.Sprint(v.list) != fmt.Sprint(first) {
					t.Errorf("%s: violations %v, parsed gave %v", p.name, v.list, first)
				}
				switch {
				case tt.wantField == "" && (!ok || len(v.list) != 0):
					t.Fatalf("%s: parseRecipient(%q) refused: %v", p.name, tt.raw, v.list)
				case tt.wantField == "" && got != tt.want:
					t.Errorf("%s: parseRecipient(%q) = %+v, want %+v", p.name, tt.raw, got, tt.want)
				case tt.wantField != "" && ok:
					t.Fatalf("%s: parseRecipient(%q) = %+v, want it refused", p.name, tt.raw, got)
				case tt.wantField != "" && (len(v.list) != 1 || v.list[0].GetField() != tt.wantField || v.list[0].GetDescription() == ""):
					t.Errorf("%s: violations = %v, want one on %q with a description", p.name, v.list, tt.wantField)
				}
			}
		})
	}
}

func TestParseClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string
		bad  bool
	}{
		{"none", "", "", false},
		{"IPv4", "203.0.113.9", "203.0.113.9", false},
		{"IPv4-mapped IPv6", "::ffff:203.0.113.9", "203.0.113.9", false},
		{"IPv6 reduced to its /64", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", false},
		{"same /64, same key", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64", false},
		{"next /64, another key", "2001:db8:1:3::1", "2001:db8:1:3::/64", false},
		{"IPv6 zone dropped", "fe80::1%eth0", "fe80::/64", false},
		{"upper-case IPv6", "2001:DB8::1", "2001:db8::/64", false},
		{"garbage", "not-an-ip", "", true},
		{"three octets", "1.2.3", "", true},
		{"leading zero octet", "01.2.3.4", "", true},
		{"with port", "203.0.113.9:443", "", true},
		{"bracketed", "[2001:db8::1]", "", true},
		{"surrounding space", " 203.0.113.9", "", true},
		{"CIDR", "203.0.113.0/24", "", true},
		{"too long", strings.Repeat("1", 65), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var v violations
			_, got, ok := parseClientIP(tt.raw, &v)
			if tt.bad {
				if ok || len(v.list) != 1 || v.list[0].GetField() != "client_ip" {
					t.Errorf("parseClientIP(%q) = %q, %v, %v; want a client_ip violation", tt.raw, got, ok, v.list)
				}
				return
			}
			if !ok || len(v.list) != 0 || got != tt.want {
				t.Errorf("parseClientIP(%q) = %q, %v, %v; want %q", tt.raw, got, ok, v.list, tt.want)
			}
		})
	}
}

func TestNewCodeLength(t *testing.T) {
	t.Parallel()
	for n := 4; n <= 10; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			for range 1000 {
				c := newCode(n)
				if len(c) != n || !digits(c) {
					t.Fatalf("newCode(%d) = %q, want %d digits", n, c, n)
				}
			}
		})
	}
}

// chernoffBound returns the largest deviation from its mean mu that a
// Binomial count with mean mu exceeds with probability at most p, by the
// Chernoff bounds P(X >= (1+d)mu) <= exp(-d²mu/(2+d)) and
// P(X <= (1-d)mu) <= exp(-d²mu/2) <= exp(-d²mu/(2+d)). Solving
// 2·exp(-d²mu/(2+d)) = p for d gives d = (a + sqrt(a² + 8a)) / 2 with
// a = ln(2/p)/mu.
func chernoffBound(mu, p float64) float64 {
	a := math.Log(2/p) / mu
	return mu * (a + math.Sqrt(a*a+8*a)) / 2
}

// TestNewCodeDigitFrequency checks that every digit is equally likely in
// every position. A correct generator fails it with probability below
// 1e-9: the bounds are Chernoff bounds (not a normal approximation), with
// the failure probability split evenly over the 110 counts checked.
//
// 2,000,000 digits make the test sharp enough to catch the modulo bias the
// design forbids: taking a random byte mod 10 gives 6–9 a probability of
// 25/256 instead of 1/10, that is 4,688 fewer of each among 2,000,000
// digits, well beyond the ±3,245 the bound allows.
func TestNewCodeDigitFrequency(t *testing.T) {
	t.Parallel()
	const (
		length = 10
		codes  = 200_000
		pFail  = 1e-9
	)
	var perPos [length][10]int
	var total [10]int
	for range codes {
		c := newCode(length)
		for i := range length {
			d := c[i] - '0'
			perPos[i][d]++
			total[d]++
		}
	}
	cells := float64(length*10 + 10)
	muPos := float64(codes) / 10
	muTotal := float64(codes*length) / 10
	boundPos := chernoffBound(muPos, pFail/cells)
	boundTotal := chernoffBound(muTotal, pFail/cells)
	for d := range 10 {
		if dev := math.Abs(float64(total[d]) - muTotal); dev > boundTotal {
			t.Errorf("digit %d drawn %d times in %d digits, want %.0f ± %.0f", d, total[d], codes*length, muTotal, boundTotal)
		}
		for i := range length {
			if dev := math.Abs(float64(perPos[i][d]) - muPos); dev > boundPos {
				t.Errorf("digit %d drawn %d times at position %d of %d codes, want %.0f ± %.0f", d, perPos[i][d], i, codes, muPos, boundPos)
			}
		}
	}
	t.Logf("bounds: ±%.0f per digit overall, ±%.0f per digit and position", boundTotal, boundPos)
}

func testKeyring(tb testing.TB, secret string) *keyring {
	tb.Helper()
	k := newKeyring([]byte(secret))
	return k
}

const (
	secretA = "secret-a-0123456789abcdef0123456789"
	secretB = "secret-b-0123456789abcdef0123456789"
)

// sumBytes is an hmacPool sum as a slice.
func sumBytes(sum [sha256.Size]byte) []byte { return sum[:] }

func TestKeyringPurposesDiffer(t *testing.T) {
	t.Parallel()
	k := testKeyring(t, secretA)
	const in = "+14155550123"
	sums := map[string][]byte{
		"recipient":   sumBytes(k.recipient.sum(in)),
		"code":        sumBytes(k.code.sum(in)),
		"ip":          sumBytes(k.ip.sum(in)),
		"idempotency": sumBytes(k.idem.sum(in)),
	}
	for a, sa := range sums {
		for b, sb := range sums {
			if a < b && bytes.Equal(sa, sb) {
				t.Errorf("purposes %s and %s hash %q the same", a, b, in)
			}
		}
	}
	// The identifiers built on them differ too.
	if ip, idem := k.ipID(in), k.idempotencyID(in); strings.TrimPrefix(ip, "ip:") == idem {
		t.Errorf("ipID and idempotencyID of the same input share a hash: %s", idem)
	}
}

func TestRecipientID(t *testing.T) {
	t.Parallel()
	k := testKeyring(t, secretA)
	phone := recipient{otp.SMS, "+14155550123", "1"}
	email := recipient{otp.Email, "jane@example.com", ""}

	t.Run("stable", func(t *testing.T) {
		t.Parallel()
		// The same secret after a restart must find the same codes.
		again := testKeyring(t, secretA)
		for _, r := range []recipient{phone, email} {
			if a, b, c := k.recipientID(r), k.recipientID(r), again.recipientID(r); a != b || a != c {
				t.Errorf("recipientID(%s) not stable: %s %s %s", r.addr, a, b, c)
			}
		}
	})
	t.Run("distinct", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			a, b recipient
		}{
			{"other number", phone, recipient{otp.SMS, "+14155550124", "1"}},
			{"other email", email, recipient{otp.Email, "john@example.com", ""}},
			{"plus tag", email, recipient{otp.Email, "jane+otp@example.com", ""}},
			{"same address, other channel", recipient{otp.SMS, "x@example.com", ""}, recipient{otp.Email, "x@example.com", ""}},
		}
		for _, tt := range tests {
			if k.recipientID(tt.a) == k.recipientID(tt.b) {
				t.Errorf("%s: %+v and %+v share an id", tt.name, tt.a, tt.b)
			}
		}
		if k.recipientID(phone) == testKeyring(t, secretB).recipientID(phone) {
			t.Error("two secrets give the same recipient id")
		}
	})
	t.Run("holds no address", func(t *testing.T) {
		t.Parallel()
		for _, r := range []recipient{phone, email} {
			id := k.recipientID(r)
			for _, part := range []string{r.addr, "4155550123", "jane", "example"} {
				if strings.Contains(id, part) {
					t.Errorf("recipientID(%s) = %s contains %q", r.addr, id, part)
				}
			}
			if len(id) != 22 { // 128 bits, unpadded base64
				t.Errorf("recipientID(%s) = %q, want 22 characters", r.addr, id)
			}
		}
	})
}

func TestCodeHashBindsRecipientAndUsage(t *testing.T) {
	t.Parallel()
	k := testKeyring(t, secretA)
	rid := k.recipientID(recipient{otp.SMS, "+14155550123", "1"})
	other := k.recipientID(recipient{otp.SMS, "+14155550124", "1"})
	base := k.codeHash(rid, "sign_in", "123456")
	if !bytes.Equal(base, k.codeHash(rid, "sign_in", "123456")) {
		t.Fatal("codeHash is not stable")
	}
	if bytes.Contains(base, []byte("123456")) {
		t.Error("codeHash contains the code")
	}
	tests := []struct {
		name string
		hash []byte
	}{
		{"other recipient", k.codeHash(other, "sign_in", "123456")},
		{"other usage type", k.codeHash(rid, "forgot_password", "123456")},
		{"other code", k.codeHash(rid, "sign_in", "123457")},
		{"other secret", testKeyring(t, secretB).codeHash(rid, "sign_in", "123456")},
		{"parts shifted", k.codeHash(rid+"s", "ign_in", "123456")},
		{"recipient hash instead", sumBytes(k.recipient.sum(rid, "sign_in", "123456"))},
	}
	for _, tt := range tests {
		if bytes.Equal(tt.hash, base) {
			t.Errorf("%s: same hash as the original", tt.name)
		}
	}
}

// statusOf converts err with toStatus and returns the status.
func statusOf(tb testing.TB, err error) *status.Status {
	tb.Helper()
	out := toStatus(err)
	if out == nil {
		tb.Fatalf("toStatus(%v) = nil", err)
	}
	st, ok := status.FromError(out)
	if !ok {
		tb.Fatalf("toStatus(%v) = %v, not a gRPC status", err, out)
	}
	return st
}

// detailOf returns the detail of type T of st, or nil.
func detailOf[T any](st *status.Status) T {
	var zero T
	for _, d := range st.Details() {
		if v, ok := d.(T); ok {
			return v
		}
	}
	return zero
}

func TestToStatus(t *testing.T) {
	t.Parallel()
	leak := errors.New("secret-token-xyz +14155550123")
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		message string // exact, when set
		// check inspects the details.
		check func(tb testing.TB, st *status.Status)
		// never lists text that must not reach the client anywhere in the
		// status, details included.
		never []string
	}{
		{
			name: "invalid input",
			err: func() error {
				var v violations
				v.add("recipient", "is not a valid phone number")
				v.add("client_ip", "is not an IP address")
				return v.err()
			}(),
			code:    codes.InvalidArgument,
			message: "invalid request: recipient is not a valid phone number (and 1 more)",
			check: func(tb testing.TB, st *status.Status) {
				br := detailOf[*errdetails.BadRequest](st)
				if br == nil || len(br.GetFieldViolations()) != 2 ||
					br.GetFieldViolations()[0].GetField() != "recipient" || br.GetFieldViolations()[1].GetField() != "client_ip" {
					tb.Errorf("BadRequest = %v, want violations on recipient and client_ip", br)
				}
			},
		},
		{
			name:  "rate limited",
			err:   fmt.Errorf("send: %w", &rateLimitError{limit: limitPerRecipient, retryAfter: 1500 * time.Microsecond}),
			code:  codes.ResourceExhausted,
			check: wantRateLimit(limitPerRecipient, 2*time.Millisecond),
		},
		{
			name:  "rate limited, retry rounded up to whole ms",
			err:   &rateLimitError{limit: limitPerIP, retryAfter: 41*time.Second + time.Nanosecond},
			code:  codes.ResourceExhausted,
			check: wantRateLimit(limitPerIP, 41*time.Second+time.Millisecond),
		},
		{
			name:  "rate limited, exact ms kept",
			err:   &rateLimitError{limit: limitResend, retryAfter: 60 * time.Second},
			code:  codes.ResourceExhausted,
			check: wantRateLimit(limitResend, 60*time.Second),
		},
		{
			name:  "rate limited, zero wait is at least 1ms",
			err:   &rateLimitError{limit: limitPerCountry, retryAfter: 0},
			code:  codes.ResourceExhausted,
			check: wantRateLimit(limitPerCountry, time.Millisecond),
		},
		{
			name:  "rate limited, negative wait is at least 1ms",
			err:   &rateLimitError{limit: limitVerifyPerRecipient, retryAfter: -time.Second},
			code:  codes.ResourceExhausted,
			check: wantRateLimit(limitVerifyPerRecipient, time.Millisecond),
		},
		{
			name:  "provider rejected permanently",
			err:   fmt.Errorf("deliver: %w", providers.Permanent("twilio", "21211", leak)),
			code:  codes.FailedPrecondition,
			never: []string{"secret-token-xyz", "4155550123"},
			check: func(tb testing.TB, st *status.Status) {
				if !strings.Contains(st.Message(), "twilio") {
					tb.Errorf("message %q does not name the provider", st.Message())
				}
				if info := detailOf[*errdetails.ErrorInfo](st); info.GetReason() != "PROVIDER_REJECTED" {
					tb.Errorf("ErrorInfo = %v, want reason PROVIDER_REJECTED", info)
				}
			},
		},
		{
			name:  "every provider failed transiently",
			err:   providers.Transient("tencent", "RequestLimitExceeded", leak),
			code:  codes.Unavailable,
			never: []string{"secret-token-xyz", "4155550123"},
			check: func(tb testing.TB, st *status.Status) {
				if ri := detailOf[*errdetails.RetryInfo](st); ri.GetRetryDelay().AsDuration() <= 0 {
					tb.Errorf("RetryInfo = %v, want a positive delay", ri)
				}
			},
		},
		{
			// The per-attempt timeout of a route ran out on every provider
			// while the caller's deadline was still far: the providers are
			// down, which DESIGN.md answers with UNAVAILABLE.
			name:  "every provider timed out",
			err:   providers.ClassifyTransport("twilio", fmt.Errorf("post: %w", context.DeadlineExceeded)),
			code:  codes.Unavailable,
			never: []string{"4155550123"},
			check: func(tb testing.TB, st *status.Status) {
				if ri := detailOf[*errdetails.RetryInfo](st); ri.GetRetryDelay().AsDuration() <= 0 {
					tb.Errorf("RetryInfo = %v, want a positive delay", ri)
				}
			},
		},
		{
			name: "no provider, as the router returns it",
			err:  fmt.Errorf("deliver: %w", providers.Permanent("", "no_provider", providers.ErrNoProvider)),
			code: codes.FailedPrecondition,
			check: func(tb testing.TB, st *status.Status) {
				if info := detailOf[*errdetails.ErrorInfo](st); info.GetReason() != "NO_PROVIDER" {
					tb.Errorf("ErrorInfo = %v, want reason NO_PROVIDER", info)
				}
			},
		},
		{
			name: "no template",
			err:  fmt.Errorf("%w: templates: no sms template for SignIn in fr or en", errNoTemplate),
			code: codes.FailedPrecondition,
			check: func(tb testing.TB, st *status.Status) {
				if !strings.HasPrefix(st.Message(), errNoTemplate.Error()) {
					tb.Errorf("message = %q, want it to start with %q", st.Message(), errNoTemplate)
				}
				if info := detailOf[*errdetails.ErrorInfo](st); info.GetReason() != "NO_TEMPLATE" {
					tb.Errorf("ErrorInfo = %v, want reason NO_TEMPLATE", info)
				}
			},
		},
		{
			name:  "store unavailable",
			err:   fmt.Errorf("%w: dial tcp 10.1.2.3:6379: connection refused", ErrStoreUnavailable),
			code:  codes.Unavailable,
			never: []string{"10.1.2.3", "6379"},
			check: func(tb testing.TB, st *status.Status) {
				if ri := detailOf[*errdetails.RetryInfo](st); ri.GetRetryDelay().AsDuration() <= 0 {
					tb.Errorf("RetryInfo = %v, want a positive delay", ri)
				}
			},
		},
		{
			// A store step that ran out of time, or answered what nobody
			// expected, is the store failing: UNAVAILABLE, never INTERNAL
			// or DEADLINE_EXCEEDED, so that the caller retries.
			name:  "store step out of time",
			err:   &storeError{fmt.Errorf("verify: read tcp 10.1.2.3:6379: %w", context.DeadlineExceeded)},
			code:  codes.Unavailable,
			never: []string{"10.1.2.3"},
			check: func(tb testing.TB, st *status.Status) {
				if ri := detailOf[*errdetails.RetryInfo](st); ri.GetRetryDelay().AsDuration() <= 0 {
					tb.Errorf("RetryInfo = %v, want a positive delay", ri)
				}
				if info := detailOf[*errdetails.ErrorInfo](st); info.GetReason() != "STORE_UNAVAILABLE" {
					tb.Errorf("ErrorInfo = %v, want STORE_UNAVAILABLE", info)
				}
			},
		},
		{
			name:  "store reply nobody expected",
			err:   &storeError{errors.New("verify: ERR user_script:12: secret-token-xyz")},
			code:  codes.Unavailable,
			never: []string{"secret-token-xyz", "user_script"},
		},
		{
			name: "deadline exceeded",
			err:  fmt.Errorf("begin send: %w", context.DeadlineExceeded),
			code: codes.DeadlineExceeded,
		},
		{
			name: "canceled",
			err:  fmt.Errorf("verify: %w", context.Canceled),
			code: codes.Canceled,
		},
		{
			name:    "idempotent send in progress",
			err:     errInProgress,
			code:    codes.Aborted,
			message: errInProgress.Error(),
		},
		{
			name:    "anything else",
			err:     fmt.Errorf("decode stored answer: %w", errors.New("proto: bad wiretype near secret-token-xyz")),
			code:    codes.Internal,
			message: "internal error",
			never:   []string{"secret-token-xyz", "wiretype"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := statusOf(t, tt.err)
			if st.Code() != tt.code {
				t.Errorf("code = %s, want %s (message %q)", st.Code(), tt.code, st.Message())
			}
			if st.Code() == codes.Unknown {
				t.Error("UNKNOWN must never reach a client")
			}
			if tt.message != "" && st.Message() != tt.message {
				t.Errorf("message = %q, want %q", st.Message(), tt.message)
			}
			whole := prototext.Format(st.Proto())
			for _, d := range st.Details() {
				if e, ok := d.(error); ok {
					t.Errorf("undecodable detail: %v", e)
				}
			}
			for _, s := range tt.never {
				if strings.Contains(whole, s) {
					t.Errorf("status leaks %q:\n%s", s, whole)
				}
			}
			if tt.check != nil {
				tt.check(t, st)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		t.Parallel()
		if err := toStatus(nil); err != nil {
			t.Errorf("toStatus(nil) = %v", err)
		}
	})
}

// wantRateLimit checks the details of a rate-limited status.
func wantRateLimit(limit string, retry time.Duration) func(tb testing.TB, st *status.Status) {
	return func(tb testing.TB, st *status.Status) {
		tb.Helper()
		if ri := detailOf[*errdetails.RetryInfo](st); ri.GetRetryDelay().AsDuration() != retry {
			tb.Errorf("RetryInfo = %v, want %v", ri, retry)
		}
		qf := detailOf[*errdetails.QuotaFailure](st)
		if len(qf.GetViolations()) != 1 || qf.GetViolations()[0].GetSubject() != limit {
			tb.Errorf("QuotaFailure = %v, want one violation of %s", qf, limit)
		}
		info := detailOf[*errdetails.ErrorInfo](st)
		if info.GetReason() != "RATE_LIMITED" || info.GetMetadata()["limit"] != limit {
			tb.Errorf("ErrorInfo = %v, want RATE_LIMITED for %s", info, limit)
		}
		if !strings.Contains(st.Message(), limit) {
			tb.Errorf("message %q does not name the limit %s", st.Message(), limit)
		}
	}
}

func TestConfigValidateNamesKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // keys with errors; none means valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"short secret", func(c *Config) { c.Secret = c.Secret[:31] }, []string{"secret"}},
		{"code length 3", func(c *Config) { c.Code.Length = 3 }, []string{"code.length"}},
		{"code length 11", func(c *Config) { c.Code.Length = 11 }, []string{"code.length"}},
		{"code length 4", func(c *Config) { c.Code.Length = 4 }, nil},
		{"code length 10", func(c *Config) { c.Code.Length = 10 }, nil},
		{"code ttl 0", func(c *Config) { c.Code.TTL = 0 }, []string{"code.ttl"}},
		{"max attempts 0", func(c *Config) { c.Code.MaxAttempts = 0 }, []string{"code.max_attempts"}},
		{"max attempts 101", func(c *Config) { c.Code.MaxAttempts = 101 }, []string{"code.max_attempts"}},
		{"negative resend interval", func(c *Config) { c.Limits.ResendInterval = -time.Second }, []string{"limits.resend_interval"}},
		{"resend interval off", func(c *Config) { c.Limits.ResendInterval = 0 }, nil},
		{"negative per_recipient", func(c *Config) { c.Limits.PerRecipient.Count = -1 }, []string{"limits.per_recipient.count"}},
		{"negative per_ip", func(c *Config) { c.Limits.PerIP.Count = -1 }, []string{"limits.per_ip.count"}},
		{"negative per_country", func(c *Config) { c.Limits.PerCountry.Count = -1 }, []string{"limits.per_country.count"}},
		{"negative verify_per_recipient", func(c *Config) { c.Limits.VerifyPerRecipient.Count = -1 }, []string{"limits.verify_per_recipient.count"}},
		{"negative verify_per_ip", func(c *Config) { c.Limits.VerifyPerIP.Count = -1 }, []string{"limits.verify_per_ip.count"}},
		{"verify_per_ip window too short", func(c *Config) { c.Limits.VerifyPerIP.Window = time.Millisecond }, []string{"limits.verify_per_ip.window"}},
		{"verify_per_ip off", func(c *Config) { c.Limits.VerifyPerIP = Window{} }, nil},
		{"window too short", func(c *Config) { c.Limits.PerCountry.Window = time.Millisecond }, []string{"limits.per_country.window"}},
		{"limit off", func(c *Config) { c.Limits.PerIP = Window{} }, nil},
		{"send timeout too short", func(c *Config) { c.SendTimeout = time.Millisecond }, []string{"send_timeout"}},
		{"idempotency ttl too short", func(c *Config) { c.IdempotencyTTL = time.Second }, []string{"idempotency_ttl"}},
		{"several at once", func(c *Config) {
			c.Secret, c.Code.Length, c.Limits.PerIP.Count, c.SendTimeout = "", 99, -1, 0
		}, []string{"secret", "code.length", "limits.per_ip.count", "send_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.Secret = redact.Secret(secretA)
			tt.mutate(&c)
			errtest.WantKeys(t, c.Validate(), tt.want)
		})
	}
}

// A recipient's bucket (its keys' hash tag) does not depend on the secret,
// so its keys under every secret share a hash slot; it is 3 hex digits,
// one mailbox has one bucket, and recipients spread over the 4096 buckets.
func TestBucket(t *testing.T) {
	t.Parallel()
	var v violations
	a, _ := parseRecipient("Jane.Doe@Example.COM", 0, &v)
	b, _ := parseRecipient("jane.doe@example.com", 0, &v)
	if err := v.err(); err != nil {
		t.Fatal(err)
	}
	ka, kb := testKeyring(t, secretA), testKeyring(t, secretB)
	if ka.recipientID(a) == kb.recipientID(a) {
		t.Fatal("the two secrets give one id")
	}
	if got := recipientBucket(a); got != recipientBucket(b) || len(got) != 3 || strings.Trim(got, "0123456789abcdef") != "" {
		t.Fatalf("buckets %q and %q: want one bucket of 3 hex digits for one mailbox", got, recipientBucket(b))
	}
	if recipientBucket(recipient{otp.SMS, "+14155550123", "1"}) == ipBucket("+14155550123") {
		t.Error("a recipient and an IP of the same text share a bucket")
	}
	seen := map[string]bool{}
	for i := range 20000 {
		seen[recipientBucket(recipient{otp.SMS, fmt.Sprintf("+1415%07d", i), "1"})] = true
	}
	// 20,000 draws from 4096 buckets leave about 31 empty.
	if len(seen) < 4000 {
		t.Errorf("20,000 recipients fill %d of 4096 buckets", len(seen))
	}
}
