package templates

import (
	"strings"
	"testing"
)

func TestMeasureSMS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		text string
		want SMSSize
	}{
		{"empty", "", SMSSize{GSM7, 0, 0, 1}},
		{"160 a: one segment", strings.Repeat("a", 160), SMSSize{GSM7, 160, 140, 1}},
		{"161 a: two", strings.Repeat("a", 161), SMSSize{GSM7, 161, 141, 2}},
		{"306 a: two parts of 153", strings.Repeat("a", 306), SMSSize{GSM7, 306, 268, 2}},
		{"307 a: three", strings.Repeat("a", 307), SMSSize{GSM7, 307, 269, 3}},
		{"one septet is one byte", "a", SMSSize{GSM7, 1, 1, 1}},
		{"8 septets pack into 7 bytes", "abcdefgh", SMSSize{GSM7, 8, 7, 1}},
		{"euro takes two septets", "€", SMSSize{GSM7, 2, 2, 1}},
		{"every extension character takes two", "^{}\\[~]|€\f", SMSSize{GSM7, 20, 18, 1}},
		{"80 euros fill one segment", strings.Repeat("€", 80), SMSSize{GSM7, 160, 140, 1}},
		{"81 euros need two", strings.Repeat("€", 81), SMSSize{GSM7, 162, 142, 2}},
		// 152 'a' then '€': the escape sequence does not fit part 1's
		// last septet, so it moves whole to part 2.
		{"an escape is never split", strings.Repeat("a", 152) + "€" + strings.Repeat("a", 152),
			SMSSize{GSM7, 306, 268, 3}},
		{"French accents of the default alphabet", "réinitialisation à é è ù ì ò Ç É",
			SMSSize{GSM7, 32, 28, 1}},
		{"GSM-7 symbols", "@£$¥¤§¿¡ΔΦΓΛΩΠΨΣΘΞÆæßÄÖÑÜäöñüØøÅå_!\"#%&'()*+,-./:;<=>?\n\r",
			SMSSize{GSM7, 56, 49, 1}},
		{"backquote is not GSM-7", "`", SMSSize{UCS2, 1, 2, 1}},
		{"accent outside the alphabet forces UCS-2", "ê", SMSSize{UCS2, 1, 2, 1}},
		{"a tab is not GSM-7", "\t", SMSSize{UCS2, 1, 2, 1}},
		{"70 中: one segment", strings.Repeat("中", 70), SMSSize{UCS2, 70, 140, 1}},
		{"71 中: two", strings.Repeat("中", 71), SMSSize{UCS2, 71, 142, 2}},
		{"134 中: two parts of 67", strings.Repeat("中", 134), SMSSize{UCS2, 134, 268, 2}},
		{"135 中: three", strings.Repeat("中", 135), SMSSize{UCS2, 135, 270, 3}},
		{"one UCS-2 character turns the whole text", strings.Repeat("a", 69) + "ç", SMSSize{UCS2, 70, 140, 1}},
		{"euro in UCS-2 is one unit", "中€", SMSSize{UCS2, 2, 4, 1}},
		{"an emoji is two units", "😀", SMSSize{UCS2, 2, 4, 1}},
		{"35 emoji fill one segment", strings.Repeat("😀", 35), SMSSize{UCS2, 70, 140, 1}},
		// 66 units then an emoji: the surrogate pair moves whole to part 2.
		{"a surrogate pair is never split", strings.Repeat("中", 66) + "😀" + strings.Repeat("中", 66),
			SMSSize{UCS2, 134, 268, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := MeasureSMS(tc.text); got != tc.want {
				t.Errorf("MeasureSMS(%q) = %+v, want %+v", tc.text, got, tc.want)
			}
		})
	}
}
