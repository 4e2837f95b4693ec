package providers

import (
	"fmt"
	"html"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/otpd/otpd/otp"
)

// PickTemplate returns a provider's own template for usage type u from
// byUsage: u's, else Generic's (never for OrganizationInvitation, which
// carries a link and no code). ok is false when the provider has neither,
// and the message goes out with otpd's own templates, or not at all for
// providers that need a template of their own.
func PickTemplate[T any](byUsage map[otp.UsageType]T, u otp.UsageType) (t T, ok bool) {
	if t, ok = byUsage[u]; ok || u == otp.OrganizationInvitation {
		return t, ok
	}
	t, ok = byUsage[otp.Generic]
	return t, ok
}

// PreviewHTML returns the text a reader sees in an HTML body, for previews:
// tags dropped (block tags such as <p> and <br> leave a blank), entities
// decoded, blanks collapsed, cut to maxBytes bytes with an ellipsis. It is no
// HTML parser: comments, scripts and styles show.
func PreviewHTML(s string, maxBytes int) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		name := strings.ToLower(strings.Trim(strings.Fields(s[i+1:i+j] + " ")[0], "/"))
		if blockTags[name] {
			b.WriteByte(' ')
		}
		s = s[i+j+1:]
	}
	text := strings.Join(strings.Fields(html.UnescapeString(b.String())), " ")
	if len(text) <= maxBytes {
		return text
	}
	cut := maxBytes
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "…"
}

// blockTags are the tags that break a line of text.
var blockTags = map[string]bool{
	"p": true, "br": true, "div": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
	"li": true, "ul": true, "ol": true, "tr": true, "td": true, "th": true, "table": true, "hr": true,
	"section": true, "header": true, "footer": true, "body": true, "html": true, "title": true, "head": true,
}

// CheckUsageType returns nil for the usage types otpd sends (those it
// sends codes for, and OrganizationInvitation) and an error for anything
// else. Providers that can serve every usage type, falling back on otpd's
// templates, use it as their CanServe.
func CheckUsageType(u otp.UsageType) error {
	if u == otp.OrganizationInvitation || slices.Contains(otp.UsageTypes, u) {
		return nil
	}
	return fmt.Errorf("unknown usage type %q", u)
}
