package templates

import (
	"fmt"
	"html"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd/otp"
)

// Data is what a template can insert.
type Data struct {
	// Code is the one-time code, inserted as {{code}}.
	Code string
	// AppName is the application name, inserted as {{app_name}}. When it
	// is empty, Renderer.Render uses Options.AppName; Template.Execute
	// inserts it as is.
	AppName string
	// TTL is how long the code stays valid, inserted as {{ttl_minutes}}:
	// whole minutes, rounded up, at least 1.
	TTL time.Duration
	// Link is the invitation link of an OrganizationInvitation, inserted
	// as {{link}}. It may carry a token: never log it.
	Link string
}

// placeholder identifies what a template segment inserts.
type placeholder int

// The placeholders a template can hold. literal marks a segment of plain
// text.
const (
	literal placeholder = iota
	phCode
	phAppName
	phTTLMinutes
	phLink
	numValues // size of the values array, indexed by placeholder
)

// placeholders maps the name between the braces to what it inserts.
var placeholders = map[string]placeholder{
	"code":        phCode,
	"app_name":    phAppName,
	"ttl_minutes": phTTLMinutes,
	"link":        phLink,
}

// placeholderNames are the names of the placeholders, indexed by
// placeholder, for error messages.
var placeholderNames = [numValues]string{
	phCode: "code", phAppName: "app_name", phTTLMinutes: "ttl_minutes", phLink: "link",
}

// segment is either literal text or a placeholder.
type segment struct {
	ph  placeholder
	lit string // set when ph == literal
}

// Template is one compiled text with placeholders. Providers with their own
// template texts (such as Logto's "Your code is {{code}}") reuse it. A
// Template is immutable and safe for concurrent use.
type Template struct {
	name    string
	html    bool
	segs    []segment
	litSize int // total length of the literal segments
}

// Compile parses text as a template named name. The placeholders are
// {{code}}, {{app_name}}, {{ttl_minutes}} and {{link}} (CheckUsage tells
// which of them a usage type has); blanks inside the braces are
// allowed ("{{ code }}"). An unknown placeholder or an unterminated "{{" is
// an error naming name and the line and column. When html is true, Execute
// HTML-escapes every value it inserts; the literal text is kept as is.
func Compile(name, text string, html bool) (*Template, error) {
	t := &Template{name: name, html: html}
	rest := text
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.addLiteral(rest)
			return t, nil
		}
		t.addLiteral(rest[:i])
		at := len(text) - len(rest) + i // offset of "{{" in text
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("templates: %s:%s: unterminated %q", name, position(text, at), "{{")
		}
		raw := rest[i : i+2+j+2]
		ph, ok := placeholders[strings.TrimSpace(raw[2:len(raw)-2])]
		if !ok {
			return nil, fmt.Errorf("templates: %s:%s: unknown placeholder %q (want {{code}}, {{app_name}}, {{ttl_minutes}} or {{link}})",
				name, position(text, at), raw)
		}
		t.segs = append(t.segs, segment{ph: ph})
		rest = rest[i+2+j+2:]
	}
}

// addLiteral appends s as a literal segment, if it is not empty.
func (t *Template) addLiteral(s string) {
	if s == "" {
		return
	}
	t.segs = append(t.segs, segment{lit: s})
	t.litSize += len(s)
}

// position reports the 1-based line and column (in bytes) of offset off in
// text, as "line:col".
func position(text string, off int) string {
	before := text[:off]
	line := strings.Count(before, "\n") + 1
	col := off - strings.LastIndexByte(before, '\n')
	return strconv.Itoa(line) + ":" + strconv.Itoa(col)
}

// Name returns the name the template was compiled with.
func (t *Template) Name() string { return t.name }

// CheckUsage returns an error naming the template when it holds a
// placeholder that a message of usage type u has no value for: {{code}}
// or {{ttl_minutes}} in an OrganizationInvitation (a link, not a code),
// {{link}} in any other.
func (t *Template) CheckUsage(u otp.UsageType) error {
	for _, s := range t.segs {
		switch {
		case s.ph == literal:
		case u == otp.OrganizationInvitation && (s.ph == phCode || s.ph == phTTLMinutes):
			return fmt.Errorf("templates: %s: {{%s}} has no value in an %s message, which carries a {{link}}, not a code",
				t.name, placeholderNames[s.ph], u)
		case u != otp.OrganizationInvitation && s.ph == phLink:
			return fmt.Errorf("templates: %s: {{link}} has a value only in an %s message; a %s message carries a {{code}}",
				t.name, otp.OrganizationInvitation, u)
		}
	}
	return nil
}

// Inserts reports whether the template holds the placeholder named name
// ("code", "link", ...).
func (t *Template) Inserts(name string) bool {
	ph, ok := placeholders[name]
	if !ok {
		return false
	}
	for _, s := range t.segs {
		if s.ph == ph {
			return true
		}
	}
	return false
}

// Execute renders the template with d. An HTML template escapes every
// inserted value with html.EscapeString; a text template inserts values as
// they are. An empty d.AppName is inserted as the empty string.
func (t *Template) Execute(d Data) string {
	return t.execute(valuesOf(d))
}

// values holds the text each placeholder inserts, indexed by placeholder.
type values [numValues]string

// valuesOf computes the placeholder values for d.
func valuesOf(d Data) values {
	var v values
	v[phCode] = d.Code
	v[phAppName] = d.AppName
	v[phTTLMinutes] = strconv.FormatInt(ttlMinutes(d.TTL), 10)
	v[phLink] = d.Link
	return v
}

// execute renders the template with precomputed values.
func (t *Template) execute(v values) string {
	if t.html {
		for i := range v {
			v[i] = html.EscapeString(v[i])
		}
	}
	size := t.litSize
	for _, s := range t.segs {
		size += len(v[s.ph])
	}
	var b strings.Builder
	b.Grow(size)
	for _, s := range t.segs {
		if s.ph == literal {
			b.WriteString(s.lit)
		} else {
			b.WriteString(v[s.ph])
		}
	}
	return b.String()
}

// ttlMinutes returns d in whole minutes, rounded up, and at least 1.
func ttlMinutes(d time.Duration) int64 {
	m := int64(d / time.Minute)
	if d%time.Minute > 0 {
		m++
	}
	return max(m, 1)
}
