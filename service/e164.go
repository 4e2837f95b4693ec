package service

import (
	"regexp"
	"strconv"
	"sync"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

// parseNumber is phonenumbers.Parse(raw, "") with a fast path for input
// already in E.164 form, which is what the API asks callers for: "+" and 8
// to 15 digits, nothing else.
//
// phonenumbers.Parse runs regular expressions over the whole input for
// things such input cannot hold (an extension, a second number, letters):
// about 11 µs of the 20 µs a new number costs, the largest share of a
// SendCode's CPU. For E.164 input the steps that remain are simple and are
// done here exactly as Parse does them (parseHelper in phonenumberutil.go):
// the country calling code is the first 1, 2 or 3 digits that are a known
// one; the rest is the national number, unless it starts with the region's
// national prefix, which Parse may strip: those numbers take Parse itself;
// and a leading zero is kept as the "Italian leading zero". A test checks
// the two agree on every example number of every region and on 60,000
// random digit strings.
func parseNumber(raw string) (*phonenumbers.PhoneNumber, error) {
	if n, ok := parseE164(raw); ok {
		return n, nil
	}
	return phonenumbers.Parse(raw, "")
}

// parseE164 is the fast path of parseNumber; ok is false when raw is not
// plain E.164 or is a case it leaves to phonenumbers.Parse.
func parseE164(raw string) (*phonenumbers.PhoneNumber, bool) {
	cc, ccLen, ok := splitE164(raw)
	if !ok {
		return nil, false
	}
	nsn := raw[1+ccLen:]
	v, err := strconv.ParseUint(nsn, 10, 64)
	if err != nil {
		return nil, false
	}
	n := &phonenumbers.PhoneNumber{CountryCode: proto.Int32(int32(cc)), NationalNumber: proto.Uint64(v)}
	if len(nsn) > 1 && nsn[0] == '0' {
		n.ItalianLeadingZero = proto.Bool(true)
		zeros := 1
		for zeros < len(nsn)-1 && nsn[zeros] == '0' {
			zeros++
		}
		if zeros != 1 {
			n.NumberOfLeadingZeros = proto.Int32(int32(zeros))
		}
	}
	return n, true
}

// splitE164 is parseE164 without building the number: the country calling
// code and the length of its digits, so that raw[1+ccLen:] is the national
// significant number, exactly as phonenumbers.GetNationalSignificantNumber
// gives it for parseE164's number (leading zeros included), and raw itself
// is the number's E.164 form. ok is false when parseE164's would be.
func splitE164(raw string) (cc, ccLen int, ok bool) {
	if len(raw) < 9 || len(raw) > 16 || raw[0] != '+' || raw[1] == '0' {
		return 0, 0, false
	}
	digits := raw[1:]
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, 0, false
		}
	}
	prefixes := nationalPrefixes()
	for i := 1; i <= 3; i++ {
		cc, _ := strconv.Atoi(digits[:i])
		prefix, known := prefixes[cc]
		if !known {
			if phonenumbers.GetRegionCodeForCountryCode(cc) != phonenumbers.UNKNOWN_REGION {
				return 0, 0, false // a code Parse knows and the table does not
			}
			continue
		}
		// The first known code is the country code, as in Parse.
		nsn := digits[i:]
		if prefix != nil && prefix.MatchString(nsn) {
			return 0, 0, false
		}
		if _, err := strconv.ParseUint(nsn, 10, 64); err != nil {
			return 0, 0, false
		}
		return cc, i, true
	}
	return 0, 0, false
}

// nationalPrefixes maps every country calling code to the national prefix
// pattern Parse strips for it (nil when it has none), from the metadata of
// the code's main region, or of the non-geographic entity, as Parse picks
// it. A code missing from the map takes the slow path.
var nationalPrefixes = sync.OnceValue(func() map[int]*regexp.Regexp {
	out := map[int]*regexp.Regexp{}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return out // every number takes phonenumbers.Parse
	}
	for _, m := range coll.GetMetadata() {
		cc := int(m.GetCountryCode())
		main := phonenumbers.GetRegionCodeForCountryCode(cc)
		if m.GetId() != main && !(main == "001" && m.GetId() == "001") {
			continue
		}
		var re *regexp.Regexp
		if p := m.GetNationalPrefixForParsing(); p != "" {
			// The very pattern Parse builds (maybeStripNationalPrefixAndCarrierCode).
			if re, err = regexp.Compile("^(?:" + p + ")"); err != nil {
				continue
			}
		}
		out[cc] = re
	}
	return out
})
