package templates

import "unicode/utf16"

// Encoding is the character encoding an SMS travels in.
type Encoding string

// The two encodings of SMS text (3GPP TS 23.038).
const (
	// GSM7 is the GSM 7-bit default alphabet with its extension table:
	// 160 characters in one segment.
	GSM7 Encoding = "GSM-7"
	// UCS2 is UTF-16, which a phone falls back to when a character is not
	// in the GSM-7 alphabet: 70 characters in one segment.
	UCS2 Encoding = "UCS-2"
)

// Segment sizes: a message longer than one segment is split into parts
// whose user data header takes 6 bytes of each.
const (
	gsm7Single = 160 // septets in a single-segment message
	gsm7Part   = 153 // septets in each part of a longer one
	ucs2Single = 70  // UTF-16 units in a single-segment message
	ucs2Part   = 67  // UTF-16 units in each part of a longer one
)

// SMSSize is how an SMS text travels: its encoding, its length in that
// encoding and the number of segments (billed messages) it takes.
type SMSSize struct {
	Encoding Encoding `json:"encoding"`
	// Units is the length in septets for GSM-7, in UTF-16 code units for
	// UCS-2.
	Units int `json:"units"`
	// Bytes is the length on the air: ceil(septets×7/8) for GSM-7, two
	// per unit for UCS-2. Android's SMS Retriever reads messages of at
	// most 140 bytes, which is one segment in either encoding.
	Bytes int `json:"bytes"`
	// Segments is the number of parts the text is sent in; parts never
	// split a GSM-7 escape sequence or a UTF-16 surrogate pair.
	Segments int `json:"segments"`
}

// MaxSingleBytes is the size of one SMS segment's text, and the most
// Android's SMS Retriever reads.
const MaxSingleBytes = 140

// MeasureSMS returns the encoding, length and segments of text sent as one
// SMS. Text made of the GSM-7 default alphabet and its extension table
// (where ^ { } \ [ ~ ] | € and form feed take two septets each) is GSM-7;
// any other character makes the whole text UCS-2, where a character beyond
// the Basic Multilingual Plane (an emoji) takes two units.
func MeasureSMS(text string) SMSSize {
	gsm := true
	septets := 0
	for _, r := range text {
		n := gsm7Septets(r)
		if n == 0 {
			gsm = false
			break
		}
		septets += n
	}
	if gsm {
		return SMSSize{
			Encoding: GSM7, Units: septets, Bytes: (septets*7 + 7) / 8,
			Segments: segments(text, septets, gsm7Single, gsm7Part, gsm7Septets),
		}
	}
	units := 0
	for _, r := range text {
		units += utf16.RuneLen(r)
	}
	return SMSSize{
		Encoding: UCS2, Units: units, Bytes: 2 * units,
		Segments: segments(text, units, ucs2Single, ucs2Part, ucs2Units),
	}
}

// segments counts the parts of text, total units long, with at most single
// units in one segment and part units in each part of a longer message. A
// character (size gives its units) is never split between parts.
func segments(text string, total, single, part int, size func(rune) int) int {
	if total <= single {
		return 1
	}
	n, used := 1, 0
	for _, r := range text {
		u := size(r)
		if used+u > part {
			n++
			used = 0
		}
		used += u
	}
	return n
}

// ucs2Units is the number of UTF-16 units of r; utf16.RuneLen gives -1 for
// an invalid rune, which Go's range loop has already made U+FFFD.
func ucs2Units(r rune) int { return max(utf16.RuneLen(r), 1) }

// gsm7Septets returns the septets r takes in GSM-7: 1 in the default
// alphabet, 2 in the extension table (behind an escape), 0 when GSM-7 has
// no such character.
func gsm7Septets(r rune) int {
	if r < 0x80 {
		return int(asciiSeptets[r])
	}
	switch r {
	case '€':
		return 2
	case '£', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', 'Ø', 'ø', 'Å', 'å',
		'Δ', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 'Æ', 'æ', 'ß', 'É',
		'¤', '¡', 'Ä', 'Ö', 'Ñ', 'Ü', '§', '¿', 'ä', 'ö', 'ñ', 'ü', 'à':
		return 1
	}
	return 0
}

// asciiSeptets gives the septets of each ASCII character in GSM-7: 0 for
// those it lacks (control characters other than LF, CR and FF, and the
// backquote).
var asciiSeptets = func() (t [0x80]byte) {
	for c := ' '; c <= '~'; c++ {
		t[c] = 1
	}
	t['\n'], t['\r'] = 1, 1
	t['`'] = 0
	for _, c := range "\f^{}\\[~]|" {
		t[c] = 2
	}
	return t
}()
