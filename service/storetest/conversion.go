package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/otpd/otpd/service"
)

// The low-conversion rule (service.Slot.Conversion) on every store.
var conversionTests = []struct {
	name string
	fn   func(t *testing.T, s service.Store)
}{
	{"ConversionMinUnverified", testConversionMin},
	{"ConversionVerifiedLetMoreThrough", testConversionRatio},
	{"ConcurrentSendsExactConversion", testConcurrentConversion},
	{"ConversionReleaseFrees", testConversionRelease},
	{"ConversionCreditCountsOnce", testConversionCreditOnce},
	{"ConversionRecordOnly", testConversionRecord},
	{"RotationCarriesConversion", testRotationConversion},
	{"ConversionSplitTakeSlots", testConversionTakeSlots},
}

// conv is a conversion slot of a subject of its own.
func conv(limit string, minUnverified int, ratio float64) service.Slot {
	return service.Slot{Limit: limit, Key: id("cv"), Window: service.Window{Window: time.Hour},
		Conversion: &service.ConversionRule{MinUnverified: minUnverified, Ratio: ratio}}
}

// convSend is a send of a fresh recipient through slots.
func convSend(at time.Duration, slots ...service.Slot) service.SendParams {
	p := send(id("r"), "sign_in", right, t0.Add(at))
	p.Slots = slots
	return p
}

func mustCredit(tb testing.TB, s service.Store, at time.Duration, member string, slots ...service.Slot) {
	tb.Helper()
	if err := s.CreditSlots(context.Background(), t0.Add(at), member, slots); err != nil {
		tb.Fatalf("CreditSlots: %v", err)
	}
}

// min_unverified sends nobody verifies are accepted, the next is refused
// until the oldest leaves the window; a refused send stores nothing.
func testConversionMin(t *testing.T, s service.Store) {
	cc := conv("conversion_country", 3, 0.5)
	for i := range 3 {
		p := convSend(time.Duration(i)*time.Minute, cc)
		p.Credit = "abcsubject"
		mustBegin(t, s, p, service.SendAccepted)
		if i == 0 {
			// The code's send and its stored subject come back with OK.
			v := verify(p.Recipient.ID, "sign_in", right, t0.Add(30*time.Second))
			res := mustVerify(t, s, v, service.VerifyOK)
			if res.VerificationID != p.VerificationID || res.Credit != "abcsubject" {
				t.Fatalf("Verify OK = %+v, want verification id %s and credit abcsubject", res, p.VerificationID)
			}
			if res = mustVerify(t, s, v, service.VerifyOK); res.VerificationID != p.VerificationID {
				t.Fatalf("Verify re-run = %+v, want verification id %s", res, p.VerificationID)
			}
		}
	}
	refused := convSend(3*time.Minute, cc)
	res := mustBegin(t, s, refused, service.SendSlotLimited)
	if res.Limit != "conversion_country" {
		t.Fatalf("denial = %+v, want conversion_country", res)
	}
	near(t, "RetryAfter", res.RetryAfter, 57*time.Minute)
	mustVerify(t, s, verify(refused.Recipient.ID, "sign_in", right, t0.Add(3*time.Minute)), service.VerifyExpired)
	// The oldest unverified send left the window: one more goes.
	mustBegin(t, s, convSend(time.Hour+time.Second, cc), service.SendAccepted)
	mustBegin(t, s, convSend(time.Hour+2*time.Second, cc), service.SendSlotLimited)
}

// Verified sends leave the unverified ones and raise the threshold to
// ratio × verified.
func testConversionRatio(t *testing.T, s service.Store) {
	cc := conv("conversion_country", 2, 2)
	a, b := convSend(0, cc), convSend(time.Second, cc)
	mustBegin(t, s, a, service.SendAccepted)
	mustBegin(t, s, b, service.SendAccepted)
	mustBegin(t, s, convSend(2*time.Second, cc), service.SendSlotLimited)
	mustCredit(t, s, 3*time.Second, a.VerificationID, cc)
	mustCredit(t, s, 4*time.Second, b.VerificationID, cc)
	// 0 unverified, 2 verified: max(2, 2 × 2) = 4 more.
	for i := range 4 {
		mustBegin(t, s, convSend(5*time.Second+time.Duration(i)*time.Second, cc), service.SendAccepted)
	}
	mustBegin(t, s, convSend(10*time.Second, cc), service.SendSlotLimited)
}

// Parallel sends through one conversion slot: exactly min_unverified go.
func testConcurrentConversion(t *testing.T, s service.Store) {
	cc := conv("conversion_country", 10, 0.2)
	const n = 60
	accepted, limited := parallelSends(t, s, n, service.SendSlotLimited, func(int) service.SendParams {
		return convSend(0, cc)
	})
	if accepted != 10 || limited != n-10 {
		t.Fatalf("%d parallel sends through min_unverified 10: %d accepted, %d refused", n, accepted, limited)
	}
}

// A send delivered nowhere is released, and so not unverified.
func testConversionRelease(t *testing.T, s service.Store) {
	ip := conv("conversion_client_ip", 1, 0.2)
	ip.Bucket = bucketOf(ip.Key)
	a := convSend(0, ip)
	mustBegin(t, s, a, service.SendAccepted)
	mustBegin(t, s, convSend(time.Second, ip), service.SendSlotLimited)
	if err := s.ReleaseSlots(context.Background(), a.VerificationID, []service.Slot{ip}); err != nil {
		t.Fatalf("ReleaseSlots: %v", err)
	}
	mustBegin(t, s, convSend(2*time.Second, ip), service.SendAccepted)
	// A released send credited later counts nothing.
	mustCredit(t, s, 3*time.Second, a.VerificationID, ip)
	mustBegin(t, s, convSend(4*time.Second, ip), service.SendSlotLimited)
}

// A credit run again, or for a send the slot never held, counts nothing.
func testConversionCreditOnce(t *testing.T, s service.Store) {
	cc := conv("conversion_country", 1, 1)
	a := convSend(0, cc)
	mustBegin(t, s, a, service.SendAccepted)
	mustBegin(t, s, convSend(time.Second, cc), service.SendSlotLimited)
	for range 3 {
		mustCredit(t, s, 2*time.Second, a.VerificationID, cc)
	}
	mustCredit(t, s, 2*time.Second, id("never-sent"), cc)
	// 1 verified: max(1, 1 × 1) = 1 unverified; 2 or more would let a
	// second through.
	mustBegin(t, s, convSend(3*time.Second, cc), service.SendAccepted)
	mustBegin(t, s, convSend(4*time.Second, cc), service.SendSlotLimited)
}

// In record mode nothing is refused: over the threshold the send is
// taken and named.
func testConversionRecord(t *testing.T, s service.Store) {
	cc := conv("conversion_country", 2, 0.2)
	cc.Conversion.Record = true
	plain := service.Slot{Limit: "per_country", Key: id("cc"), Window: service.Window{Count: 100, Window: time.Hour}}
	for i := range 5 {
		res := mustBegin(t, s, convSend(time.Duration(i)*time.Second, plain, cc), service.SendAccepted)
		want := ""
		if i >= 2 {
			want = "conversion_country"
		}
		if res.Over != want {
			t.Fatalf("send %d: Over = %q, want %q", i, res.Over, want)
		}
	}
	// Every one counted: the same subject enforced refuses.
	enforced := cc
	enforced.Conversion = &service.ConversionRule{MinUnverified: 5, Ratio: 0.2}
	mustBegin(t, s, convSend(10*time.Second, enforced), service.SendSlotLimited)
}

// A client IP's unverified sends and verified count carry over a rotation
// of the secret, and a credit under the new secret finds a send counted
// under the old one.
func testRotationConversion(t *testing.T, s service.Store) {
	base := id("cvip")
	rule := &service.ConversionRule{MinUnverified: 1, Ratio: 3}
	onlyA := service.Slot{Limit: "conversion_client_ip", Key: "cvip:" + base + "/a", Bucket: bucketOf(base),
		Window: service.Window{Window: time.Hour}, Conversion: rule}
	bA := onlyA
	bA.Key, bA.Previous = "cvip:"+base+"/b", []string{onlyA.Key}
	a1, a2 := convSend(0, onlyA), convSend(time.Second, onlyA)
	mustBegin(t, s, a1, service.SendAccepted)
	// 1 unverified: the second needs the first verified.
	mustBegin(t, s, convSend(time.Second, onlyA), service.SendSlotLimited)
	mustCredit(t, s, 2*time.Second, a1.VerificationID, onlyA)
	mustBegin(t, s, a2, service.SendAccepted)
	// Under b: a2 unverified, 1 verified: max(1, 3) = 3, so two more.
	mustBegin(t, s, convSend(3*time.Second, bA), service.SendAccepted)
	mustBegin(t, s, convSend(4*time.Second, bA), service.SendAccepted)
	mustBegin(t, s, convSend(5*time.Second, bA), service.SendSlotLimited)
	// a2, verified under b, is credited where it moved.
	mustCredit(t, s, 6*time.Second, a2.VerificationID, bA)
	mustBegin(t, s, convSend(7*time.Second, bA), service.SendAccepted)
}

// TakeSlots (how split stores take a send's slots) decides conversion
// slots as BeginSend does, and gives back those taken when one refuses.
func testConversionTakeSlots(t *testing.T, s service.Store) {
	ctx := context.Background()
	plain := service.Slot{Limit: "per_ip", Key: id("ip"), Window: service.Window{Count: 2, Window: time.Hour}}
	cc := conv("conversion_country", 1, 0.2)
	take := func(member string, at time.Duration) *service.SlotDenial {
		t.Helper()
		d, err := s.TakeSlots(ctx, t0.Add(at), member, []service.Slot{plain, cc})
		if err != nil {
			t.Fatalf("TakeSlots: %v", err)
		}
		return d
	}
	if d := take("m1", 0); d != nil {
		t.Fatalf("first take denied: %+v", d)
	}
	if d := take("m1", time.Second); d != nil {
		t.Fatalf("a re-run denied: %+v", d)
	}
	d := take("m2", 2*time.Second)
	if d == nil || d.Limit != "conversion_country" {
		t.Fatalf("denial = %+v, want conversion_country", d)
	}
	near(t, "RetryAfter", d.RetryAfter, time.Hour-2*time.Second)
	// m2 took no per_ip slot: one is left.
	mustCredit(t, s, 3*time.Second, "m1", cc)
	if d := take("m3", 4*time.Second); d != nil {
		t.Fatalf("take after credit denied: %+v", d)
	}
}
