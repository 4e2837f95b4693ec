package service

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

// checkE164 fails t when the fast path takes raw and answers otherwise than
// phonenumbers.Parse; it reports whether the fast path took it.
func checkE164(t *testing.T, raw string) bool {
	t.Helper()
	fast, ok := parseE164(raw)
	if !ok {
		return false
	}
	slow, err := phonenumbers.Parse(raw, "")
	if err != nil {
		t.Errorf("%s: fast path gave %v, Parse refused it: %v", raw, fast, err)
		return true
	}
	if !proto.Equal(fast, slow) {
		t.Errorf("%s: fast path gave %v, Parse %v", raw, fast, slow)
	}
	return true
}

// Every example number of every region and type, as E.164 and with the
// region's national prefix put back in front of the national number (which
// Parse strips, and the fast path must leave to it).
func TestParseE164MatchesParseOnExamples(t *testing.T) {
	t.Parallel()
	types := []phonenumbers.PhoneNumberType{
		phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE,
		phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER,
		phonenumbers.UAN, phonenumbers.VOICEMAIL,
	}
	var examples []*phonenumbers.PhoneNumber
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			if n := phonenumbers.GetExampleNumberForType(region, typ); n != nil {
				examples = append(examples, n)
			}
		}
	}
	for cc := range phonenumbers.GetSupportedGlobalNetworkCallingCodes() {
		if n := phonenumbers.GetExampleNumberForNonGeoEntity(cc); n != nil {
			examples = append(examples, n)
		}
	}
	fast := 0
	for _, n := range examples {
		e164 := phonenumbers.Format(n, phonenumbers.E164)
		if checkE164(t, e164) {
			fast++
		}
		region := phonenumbers.GetRegionCodeForNumber(n)
		if ndd := phonenumbers.GetNddPrefixForRegion(region, true); ndd != "" {
			cc := strconv.Itoa(int(n.GetCountryCode()))
			checkE164(t, "+"+cc+ndd+phonenumbers.GetNationalSignificantNumber(n))
		}
	}
	// The fast path must be the common one, or it is not worth having.
	if len(examples) < 1000 || fast < len(examples)*3/4 {
		t.Errorf("fast path took %d of %d example numbers, want at least 3/4 of 1000 or more", fast, len(examples))
	}
}

// Random digit strings: after a known country code (with its national
// prefix, leading zeros or anything) and wholly random ones.
func TestParseE164MatchesParseOnRandomNumbers(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	var codes []int
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		codes = append(codes, cc)
	}
	n := 60000
	if testing.Short() {
		n = 6000
	}
	digits := func(k int) string {
		var b strings.Builder
		for range k {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		return b.String()
	}
	fast := 0
	for i := range n {
		var raw string
		switch i % 3 {
		case 0, 1:
			cc := codes[r.IntN(len(codes))]
			lead := ""
			if i%3 == 1 {
				lead = phonenumbers.GetNddPrefixForRegion(phonenumbers.GetRegionCodeForCountryCode(cc), true) + strings.Repeat("0", r.IntN(3))
			}
			raw = "+" + strconv.Itoa(cc) + lead + digits(4+r.IntN(10))
		default:
			raw = "+" + digits(1+r.IntN(16))
		}
		if checkE164(t, raw) {
			fast++
		}
		if t.Failed() {
			return
		}
	}
	if fast < n/3 {
		t.Errorf("fast path took %d of %d numbers", fast, n)
	}
}

func TestParseE164LeavesOtherInputToParse(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"+1 415 555 0123", "+1-415-555-0123", "+1(415)5550123", "14155550123", "+01415555012",
		"+1415", "+1234567890123456", "+14155550123x12", "+١٤١٥٥٥٥٠١٢٣", "",
	} {
		if n, ok := parseE164(raw); ok {
			t.Errorf("fast path took %q as %v", raw, n)
		}
	}
}

// BenchmarkParsePhone: what a number costs on each path. "library" is
// what parsePhone did before the fast path and the cache.
func BenchmarkParsePhone(b *testing.B) {
	numbers := make([]string, 4096)
	for i := range numbers {
		numbers[i] = "+1415" + strconv.Itoa(2000000+i*1777)
	}
	b.Run("library", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			n, err := phonenumbers.Parse(numbers[i%len(numbers)], "")
			if err != nil || !phonenumbers.IsValidNumber(n) || phonenumbers.Format(n, phonenumbers.E164) == "" {
				b.Fatal(numbers[i%len(numbers)], err)
			}
		}
	})
	b.Run("e164", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var v violations
			if _, ok := parsePhone(numbers[i%len(numbers)], &v); !ok {
				b.Fatal(v.list)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := newPhoneCache(defaultPhoneCacheSize)
		for i := 0; b.Loop(); i++ {
			var v violations
			if _, ok := c.parse(numbers[i%len(numbers)], &v); !ok {
				b.Fatal(v.list)
			}
		}
	})
}
