package service

import (
	"regexp"
	"slices"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// isValidNumber is phonenumbers.IsValidNumber, answered with a quarter of
// the regular-expression matches.
//
// The library decides validity by computing the number's type: it tries
// premium rate, toll free, shared cost, VoIP, personal, pager, UAN and
// voicemail before fixed line and mobile, the types nearly every number
// it is asked about has; it matches every pattern twice (once as the
// "possible" check, once as the match itself); and for a country calling
// code shared by several regions (+1 has 25) it does all of that once to
// pick the region and again to validate for it. About 40 matches for a US
// number, the largest share of a new number's CPU on SendCode.
//
// Validity only asks whether some type matches, so the order is free: here
// fixed line and mobile go first, each pattern is matched once, and the
// region's answer is reused. A test checks the two agree on every example
// number of every region and type and on 60,000 random numbers.
func isValidNumber(n *phonenumbers.PhoneNumber) bool {
	return validNSN(int(n.GetCountryCode()), phonenumbers.GetNationalSignificantNumber(n))
}

// validNSN is isValidNumber of the number with country calling code cc and
// national significant number nsn.
func validNSN(cc int, nsn string) bool {
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	if len(regions) == 0 {
		return false
	}
	plans := numberPlans()
	if len(regions) == 1 {
		p := plans.forRegion(regions[0], cc)
		return p != nil && (regions[0] == nonGeoRegion || p.cc == cc) && p.valid(nsn)
	}
	// Several regions share the code: the first whose leading digits match
	// or, for a region without leading digits, whose patterns accept the
	// number (getRegionCodeForNumberFromRegionList). Regions sharing a code
	// are geographic ones, so the region found has the number's code.
	for _, region := range regions {
		p := plans.forRegion(region, cc)
		if p == nil {
			return false // the library would fail here too: no metadata
		}
		if p.leading != nil {
			if p.leading.MatchString(nsn) {
				return p.valid(nsn)
			}
		} else if p.valid(nsn) {
			return true
		}
	}
	return false
}

// nonGeoRegion is the region code of non-geographic entities (+800, +882).
const nonGeoRegion = "001"

// numberPlan is the part of a region's metadata validity needs, its
// patterns compiled once on first use.
type numberPlan struct {
	md      *phonenumbers.PhoneMetadata
	cc      int
	once    sync.Once
	leading *regexp.Regexp // set before use: region selection needs it
	general desc
	types   []desc // fixed line, mobile (unless the same), then the rest
}

// desc is a PhoneNumberDesc as the library matches it: the length must be
// one of lengths when any are given, and the whole number must match re.
// re is nil for the empty pattern (and an absent description, which has
// it), which matches the empty string only: most regions lack most of the
// rare types, and the classification asks about every one of them.
type desc struct {
	lengths []int32
	re      *regexp.Regexp
}

func (d desc) matches(nsn string) bool {
	if len(d.lengths) > 0 && !slices.Contains(d.lengths, int32(len(nsn))) {
		return false
	}
	if d.re == nil {
		return nsn == ""
	}
	return d.re.MatchString(nsn)
}

func newDesc(d *phonenumbers.PhoneNumberDesc) desc {
	// "^(?:" + pattern + ")$", as the library builds it (isNumberMatchingDesc).
	if d == nil || d.GetNationalNumberPattern() == "" {
		return desc{lengths: d.GetPossibleLength()}
	}
	return desc{lengths: d.PossibleLength, re: regexp.MustCompile("^(?:" + d.GetNationalNumberPattern() + ")$")}
}

func (p *numberPlan) valid(nsn string) bool {
	p.compile()
	if !p.general.matches(nsn) {
		return false
	}
	for _, d := range p.types {
		if d.matches(nsn) {
			return true
		}
	}
	return false
}

// compile compiles the plan's patterns, once.
func (p *numberPlan) compile() {
	p.once.Do(func() {
		md := p.md
		p.general = newDesc(md.GetGeneralDesc())
		p.types = append(p.types, newDesc(md.GetFixedLine()))
		if !md.GetSameMobileAndFixedLinePattern() {
			p.types = append(p.types, newDesc(md.GetMobile()))
		}
		for _, d := range []*phonenumbers.PhoneNumberDesc{md.GetPremiumRate(), md.GetTollFree(), md.GetSharedCost(),
			md.GetVoip(), md.GetPersonalNumber(), md.GetPager(), md.GetUan(), md.GetVoicemail()} {
			p.types = append(p.types, newDesc(d))
		}
	})
}

type numberPlanSet struct {
	geo    map[string]*numberPlan // by region code
	nonGeo map[int]*numberPlan    // by calling code, region "001"
}

func (s *numberPlanSet) forRegion(region string, cc int) *numberPlan {
	if region == nonGeoRegion {
		return s.nonGeo[cc]
	}
	return s.geo[region]
}

// numberPlans indexes the library's own metadata. Should it fail to load,
// every number is invalid, as the library itself would then say.
var numberPlans = sync.OnceValue(func() *numberPlanSet {
	s := &numberPlanSet{geo: map[string]*numberPlan{}, nonGeo: map[int]*numberPlan{}}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return s
	}
	for _, md := range coll.GetMetadata() {
		p := &numberPlan{md: md, cc: int(md.GetCountryCode())}
		if ld := md.GetLeadingDigits(); ld != "" {
			p.leading = regexp.MustCompile("^(?:" + ld + ")")
		}
		if md.GetId() == nonGeoRegion {
			s.nonGeo[p.cc] = p
		} else {
			s.geo[md.GetId()] = p
		}
	}
	return s
})
