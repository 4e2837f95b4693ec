package service

import (
	"github.com/nyaruka/phonenumbers"
)

// classifyE164 is phonenumbers.GetRegionCodeForNumber and
// phonenumbers.GetNumberType of a number parsePhone accepted (its E.164
// form), on the patterns isValidNumber compiled: the fraud rules ask it on
// every SMS send. The region is "001" for a non-geographic number, "" and
// the type UNKNOWN when the number does not parse or fits no plan. A test
// checks both answers against the library's on every example number of
// every region and type and on random numbers.
func classifyE164(addr string) (string, phonenumbers.PhoneNumberType) {
	if cc, ccLen, ok := splitE164(addr); ok {
		return classifyNSN(cc, addr[1+ccLen:])
	}
	n, err := phonenumbers.Parse(addr, "")
	if err != nil {
		return "", phonenumbers.UNKNOWN
	}
	return classifyNumber(n)
}

// classifyNumber is classifyE164 of a parsed number.
func classifyNumber(n *phonenumbers.PhoneNumber) (string, phonenumbers.PhoneNumberType) {
	return classifyNSN(int(n.GetCountryCode()), phonenumbers.GetNationalSignificantNumber(n))
}

// classifyNSN is classifyE164 of the number with country calling code cc
// and national significant number nsn.
func classifyNSN(cc int, nsn string) (string, phonenumbers.PhoneNumberType) {
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	if len(regions) == 0 {
		return "", phonenumbers.UNKNOWN
	}
	plans := numberPlans()
	if len(regions) == 1 {
		p := plans.forRegion(regions[0], cc)
		if p == nil {
			return "", phonenumbers.UNKNOWN
		}
		return regions[0], p.numberType(nsn)
	}
	// The region as isValidNumber picks it (getRegionCodeForNumberFromRegionList).
	for _, region := range regions {
		p := plans.forRegion(region, cc)
		if p == nil {
			return "", phonenumbers.UNKNOWN
		}
		if p.leading != nil {
			if p.leading.MatchString(nsn) {
				return region, p.numberType(nsn)
			}
		} else if t := p.numberType(nsn); t != phonenumbers.UNKNOWN {
			// A number has a type exactly when it is valid for the
			// region: one pass answers both.
			return region, t
		}
	}
	return "", phonenumbers.UNKNOWN
}

// rareTypes are the types numberPlan.types holds after fixed line and
// mobile, in its order, which is the order in which the library tries
// them (getNumberTypeHelper).
var rareTypes = [...]phonenumbers.PhoneNumberType{
	phonenumbers.PREMIUM_RATE, phonenumbers.TOLL_FREE, phonenumbers.SHARED_COST, phonenumbers.VOIP,
	phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL,
}

// numberType is the library's getNumberTypeHelper: the general pattern,
// then the rare types first, so that a premium-rate number that also fits
// the fixed-line pattern is premium rate. It is UNKNOWN exactly when the
// number is not valid for the region (numberPlan.valid): valid means the
// general pattern and some type match, and whichever type matches, a type
// is returned. Each pattern is matched at most once.
func (p *numberPlan) numberType(nsn string) phonenumbers.PhoneNumberType {
	p.compile()
	if !p.general.matches(nsn) {
		return phonenumbers.UNKNOWN
	}
	same := p.md.GetSameMobileAndFixedLinePattern()
	fixed, rare := p.types[0], p.types[1:]
	var mobile desc
	if !same {
		mobile, rare = p.types[1], p.types[2:]
	}
	for i, t := range rareTypes {
		if rare[i].matches(nsn) {
			return t
		}
	}
	isFixed := fixed.matches(nsn)
	if same {
		if isFixed {
			return phonenumbers.FIXED_LINE_OR_MOBILE
		}
		return phonenumbers.UNKNOWN
	}
	switch isMobile := mobile.matches(nsn); {
	case isFixed && isMobile:
		return phonenumbers.FIXED_LINE_OR_MOBILE
	case isFixed:
		return phonenumbers.FIXED_LINE
	case isMobile:
		return phonenumbers.MOBILE
	}
	return phonenumbers.UNKNOWN
}
