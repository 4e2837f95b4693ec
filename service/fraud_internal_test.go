package service

import (
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// checkClassify fails t when classifyNumber and the library disagree on
// the region or the type of n.
func checkClassify(t *testing.T, n *phonenumbers.PhoneNumber) {
	t.Helper()
	region, typ := classifyNumber(n)
	wantRegion, wantType := phonenumbers.GetRegionCodeForNumber(n), phonenumbers.GetNumberType(n)
	if !phonenumbers.IsValidNumber(n) {
		// parsePhone refuses these: only the type matters, and it is
		// UNKNOWN either way.
		wantRegion = region
	}
	if region != wantRegion || typ != wantType {
		t.Errorf("+%d %s: classifyNumber = %q, %v; the library says %q, %v",
			n.GetCountryCode(), phonenumbers.GetNationalSignificantNumber(n), region, typ, wantRegion, wantType)
	}
}

// Every example number of every region and type, and its variants with
// the last digit changed and a digit more or less.
func TestClassifyMatchesLibraryOnExamples(t *testing.T) {
	t.Parallel()
	examples := exampleNumbers()
	types := map[phonenumbers.PhoneNumberType]int{}
	for _, n := range examples {
		types[phonenumbers.GetNumberType(n)]++
		nsn := phonenumbers.GetNationalSignificantNumber(n)
		cc := strconv.Itoa(int(n.GetCountryCode()))
		last := nsn[len(nsn)-1]
		for _, variant := range []string{nsn, nsn[:len(nsn)-1] + string('0'+(last-'0'+5)%10), nsn + "7", nsn[:len(nsn)-1]} {
			if m, err := phonenumbers.Parse("+"+cc+variant, ""); err == nil {
				checkClassify(t, m)
			}
		}
	}
	// Every type the fraud rules name occurs among the examples.
	for typ, name := range numberTypeNames {
		if typ != phonenumbers.UNKNOWN && types[typ] == 0 {
			t.Errorf("no example number of type %s", name)
		}
	}
}

func TestClassifyMatchesLibraryOnRandomNumbers(t *testing.T) {
	t.Parallel()
	r, codes, n := randomCases(11)
	for range n {
		var b strings.Builder
		b.WriteByte('+')
		b.WriteString(strconv.Itoa(codes[r.IntN(len(codes))]))
		for range 4 + r.IntN(10) {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		if num, err := phonenumbers.Parse(b.String(), ""); err == nil {
			checkClassify(t, num)
		}
		if t.Failed() {
			return
		}
	}
}

// Every type of the library has a name in fraud.sms_number_types, and
// no name is used twice.
func TestNumberTypeNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for typ := phonenumbers.FIXED_LINE; typ <= phonenumbers.UNKNOWN; typ++ {
		name, ok := numberTypeNames[typ]
		if !ok || seen[name] {
			t.Errorf("type %d: name %q (named: %v, seen before: %v)", typ, name, ok, seen[name])
		}
		seen[name] = true
		if back, ok := numberTypeOf(name); !ok || back != typ {
			t.Errorf("numberTypeOf(%q) = %v, %v, want %d", name, back, ok, typ)
		}
	}
}

// BenchmarkClassifyE164: what the number-type rule costs an SMS send,
// against the library's own two calls.
func BenchmarkClassifyE164(b *testing.B) {
	numbers := make([]string, 4096)
	for i := range numbers {
		numbers[i] = "+1415" + strconv.Itoa(2000000+i*1777)
	}
	b.Run("library", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			n, err := phonenumbers.Parse(numbers[i%len(numbers)], "")
			if err != nil || phonenumbers.GetRegionCodeForNumber(n) != "US" || phonenumbers.GetNumberType(n) != phonenumbers.FIXED_LINE_OR_MOBILE {
				b.Fatal(numbers[i%len(numbers)])
			}
		}
	})
	b.Run("classify", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if region, typ := classifyE164(numbers[i%len(numbers)]); region != "US" || typ != phonenumbers.FIXED_LINE_OR_MOBILE {
				b.Fatal(numbers[i%len(numbers)], region, typ)
			}
		}
	})
}
