package service

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"

	"github.com/otpd/otpd/otp"
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
	examples := exampleNumbers()
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
	r, codes, n := randomCases(1)
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

// checkValid fails t when isValidNumber and phonenumbers.IsValidNumber
// disagree on n; it reports whether n is valid.
func checkValid(t *testing.T, n *phonenumbers.PhoneNumber) bool {
	t.Helper()
	want := phonenumbers.IsValidNumber(n)
	if got := isValidNumber(n); got != want {
		t.Errorf("+%d %s (region %q): isValidNumber = %v, phonenumbers.IsValidNumber = %v",
			n.GetCountryCode(), phonenumbers.GetNationalSignificantNumber(n), phonenumbers.GetRegionCodeForNumber(n), got, want)
	}
	return want
}

// Every example number of every region and type, valid by construction,
// and each one with its last digit changed and with a digit more or less,
// which many plans refuse: both answers of every region's patterns.
func TestIsValidNumberMatchesLibraryOnExamples(t *testing.T) {
	t.Parallel()
	examples := exampleNumbers()
	valid, invalid := 0, 0
	for _, n := range examples {
		nsn := phonenumbers.GetNationalSignificantNumber(n)
		cc := strconv.Itoa(int(n.GetCountryCode()))
		last := nsn[len(nsn)-1]
		for _, variant := range []string{nsn, nsn[:len(nsn)-1] + string('0'+(last-'0'+5)%10), nsn + "7", nsn[:len(nsn)-1]} {
			m, err := phonenumbers.Parse("+"+cc+variant, "")
			if err != nil {
				continue
			}
			if checkValid(t, m) {
				valid++
			} else {
				invalid++
			}
		}
	}
	t.Logf("%d examples: %d valid and %d invalid variants", len(examples), valid, invalid)
	if len(examples) < 1000 || valid < len(examples) || invalid < len(examples)/2 {
		t.Errorf("%d examples gave %d valid and %d invalid numbers: too few of one kind to compare", len(examples), valid, invalid)
	}
}

// Random national numbers after every known calling code, and wholly
// random digits: mostly invalid, some valid, across every plan.
func TestIsValidNumberMatchesLibraryOnRandomNumbers(t *testing.T) {
	t.Parallel()
	r, codes, n := randomCases(3)
	valid := 0
	for i := range n {
		var b strings.Builder
		b.WriteByte('+')
		if i%4 != 3 {
			b.WriteString(strconv.Itoa(codes[r.IntN(len(codes))]))
		}
		for range 4 + r.IntN(10) {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		num, err := phonenumbers.Parse(b.String(), "")
		if err != nil {
			continue
		}
		if checkValid(t, num) {
			valid++
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d random numbers, %d valid", n, valid)
	if valid < n/50 {
		t.Errorf("only %d of %d random numbers were valid: the comparison saw too few", valid, n)
	}
}

// randomCases sets up a random-number test: a source seeded with seed,
// every calling code, and how many numbers to try (fewer with -short).
func randomCases(seed uint64) (r *rand.Rand, codes []int, n int) {
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		codes = append(codes, cc)
	}
	n = 60000
	if testing.Short() {
		n = 6000
	}
	return rand.New(rand.NewPCG(seed, seed+1)), codes, n
}

// exampleNumbers is the metadata's example number of every region and
// type and of every non-geographic entity.
func exampleNumbers() []*phonenumbers.PhoneNumber {
	var out []*phonenumbers.PhoneNumber
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range []phonenumbers.PhoneNumberType{
			phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE,
			phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER,
			phonenumbers.UAN, phonenumbers.VOICEMAIL,
		} {
			if n := phonenumbers.GetExampleNumberForType(region, typ); n != nil {
				out = append(out, n)
			}
		}
	}
	for cc := range phonenumbers.GetSupportedGlobalNetworkCallingCodes() {
		if n := phonenumbers.GetExampleNumberForNonGeoEntity(cc); n != nil {
			out = append(out, n)
		}
	}
	return out
}

// checkParsePhone fails t when parsePhone or classifyE164 answers raw
// otherwise than the library: Parse, IsValidNumber, Format(E164) and the
// country calling code; GetRegionCodeForNumber and GetNumberType.
func checkParsePhone(t *testing.T, raw string) {
	t.Helper()
	var v violations
	got, ok := parsePhone(raw, &v)
	var want recipient
	n, err := phonenumbers.Parse(raw, "")
	wantOK := err == nil && phonenumbers.IsValidNumber(n)
	if wantOK {
		want = recipient{channel: otp.SMS, addr: phonenumbers.Format(n, phonenumbers.E164), country: strconv.Itoa(int(n.GetCountryCode()))}
	}
	if ok != wantOK || got != want {
		t.Errorf("parsePhone(%q) = %+v, %v; the library says %+v, %v", raw, got, ok, want, wantOK)
	}
	if !ok {
		return
	}
	region, typ := classifyE164(got.addr)
	if wr, wt := phonenumbers.GetRegionCodeForNumber(n), phonenumbers.GetNumberType(n); region != wr || typ != wt {
		t.Errorf("classifyE164(%q) = %q, %v; the library says %q, %v", got.addr, region, typ, wr, wt)
	}
}

// parsePhone and classifyE164 answer from the E.164 string itself when
// they can: every example number, and random ones, as the library does.
func TestParsePhoneMatchesLibrary(t *testing.T) {
	t.Parallel()
	for _, n := range exampleNumbers() {
		checkParsePhone(t, phonenumbers.Format(n, phonenumbers.E164))
	}
	r, codes, n := randomCases(3)
	for i := range n / 4 {
		var b strings.Builder
		b.WriteString("+")
		if i%2 == 0 {
			b.WriteString(strconv.Itoa(codes[r.IntN(len(codes))]))
		}
		for range 4 + r.IntN(12) {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		checkParsePhone(t, b.String())
		if t.Failed() {
			return
		}
	}
}
