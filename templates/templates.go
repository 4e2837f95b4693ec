// Package templates holds otpd's default message templates and renders them.
//
// Templates are files laid out as <channel>/<locale>/<UsageType>.<part>:
// channel is "sms" or "email"; locale is a BCP 47 tag such as "en" or
// "zh-CN"; UsageType is one of otp.UsageTypes or OrganizationInvitation;
// part is "txt" (the SMS body or the plain-text part of an email) and, for
// email only, "subject" and "html". The defaults are embedded in the binary (directory default/ of
// this package) for the locales en, zh-CN and fr; an operator can replace
// any default file, or add locales, through an override directory with the
// same layout.
//
// A template is literal text with placeholders: {{code}}, {{app_name}} and
// {{ttl_minutes}} in a code's templates, {{link}} and {{app_name}} in an
// invitation's, with optional blanks inside the braces. This package
// compiles them itself rather than with text/template, so that template
// files cannot run logic. HTML parts escape every value they insert.
//
// Render picks, for a channel, locale and usage type, the first of these
// that has a template: the locale's usage type, the locale's Generic, the
// default locale's usage type, the default locale's Generic. New checks
// that the default locale covers every channel and usage type, so a bad
// configuration fails at start-up rather than at send time.
//
// OrganizationInvitation (Logto's invitation to an organization: a link,
// not a code) is the exception. No template for it ships: an operator who
// delivers invitations adds <channel>/<locale>/OrganizationInvitation.*
// to the override directory, with {{link}} in every body part, for
// example email/en/OrganizationInvitation.subject and
// email/en/OrganizationInvitation.html. It has no Generic fallback
// (Generic says "your code"), only the default locale's; Has tells whether
// a channel and locale have one, and Render fails with ErrNoTemplate when
// not.
package templates

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/otpd/otpd/otp"
)

// defaultFS holds the default templates, under default/.
//
//go:embed default
var defaultFS embed.FS

// ErrBadLocale is wrapped by the error MatchLocale (and Render) returns for a
// malformed BCP 47 tag or one with an unknown subtag.
var ErrBadLocale = errors.New("templates: bad locale")

// ErrNoTemplate is wrapped by the error Render returns when there is no
// template for the message: only for OrganizationInvitation, which has no
// default template and no Generic fallback.
var ErrNoTemplate = errors.New("templates: no template")

// Options configure a Renderer.
type Options struct {
	// Dir is an optional override directory with the same layout as the
	// embedded defaults. A file there replaces the default file of the same
	// path, and new locales may be added. Names starting with "." are
	// ignored; any other file or directory that does not fit the layout is
	// an error. An empty email txt or html file removes that part of the
	// default.
	Dir string `yaml:"dir"`
	// DefaultLocale is the BCP 47 tag of the locale used when no other
	// matches; it must be a locale that has templates for every channel and
	// usage type (directly or through Generic). The default is "en".
	DefaultLocale string `yaml:"default_locale"`
	// AppName is inserted as {{app_name}} when Data.AppName is empty. The
	// default is "otpd".
	AppName string `yaml:"app_name"`
	// WebOTPDomain, when set, ends every SMS that carries a code with the
	// WebOTP line "@<domain> #<code>" (the origin-bound one-time code
	// format), so that browsers fill the code in on that site. It is the
	// site's host name, such as "example.com"; an internationalised name
	// is sent in its ASCII (punycode) form. Unset by default.
	WebOTPDomain string `yaml:"webotp_domain"`
	// AndroidAppHash, when set, puts the 11-character app hash of
	// Android's SMS Retriever on a line of its own before the WebOTP line
	// (or at the end), so that the app reads the code itself. The SMS
	// Retriever reads messages of at most 140 bytes: otpd -check refuses
	// templates that render longer. Unset by default.
	AndroidAppHash string `yaml:"android_app_hash"`
}

// Validate checks the keys that New cannot check by loading templates.
// Errors name the key.
func (o Options) Validate() error { return o.validateAutofill() }

// DefaultOptions returns the defaults: the embedded templates only, locale
// "en", application name "otpd".
func DefaultOptions() Options { return Options{DefaultLocale: "en", AppName: "otpd"} }

// Part file names.
const (
	partText    = "txt"
	partSubject = "subject"
	partHTML    = "html"
)

// channelParts lists the channels and the parts each one may have.
var channelParts = map[otp.Channel][]string{
	otp.SMS:   {partText},
	otp.Email: {partSubject, partText, partHTML},
}

// channels lists the channels in a fixed order, for deterministic checks.
var channels = []otp.Channel{otp.SMS, otp.Email}

// setKey names one template set: a channel, canonical locale and usage type.
type setKey struct {
	ch  otp.Channel
	loc string
	u   otp.UsageType
}

func (k setKey) String() string { return string(k.ch) + "/" + k.loc + "/" + string(k.u) }

// fileKey names one template file.
type fileKey struct {
	setKey
	part string
}

// file is one loaded template file. t is nil for an email body part that an
// empty override file removed.
type file struct {
	name string
	t    *Template
}

// set is the templates of one (channel, locale, usage type).
type set struct {
	subject, text, html *Template
}

// Renderer renders messages from the loaded templates. It is immutable
// after New and safe for concurrent use.
type Renderer struct {
	appName  string
	autofill Autofill
	def      string
	locales  []string        // canonical names, sorted
	known    map[string]bool // canonical locale names
	// same are the locale names that MatchLocale gives for themselves,
	// answered without parsing: the send path asks for the locale it
	// matched already (Has, then Render), and parsing a tag costs
	// microseconds.
	same     map[string]bool
	matcher  language.Matcher // over locales, in order
	resolved map[setKey]*set  // every channel × locale × usage type
}

// New loads and compiles the embedded templates and those of opts.Dir,
// checks them, and returns a Renderer. Errors about a template name its
// file.
func New(opts Options) (*Renderer, error) {
	if opts.AppName == "" {
		opts.AppName = DefaultOptions().AppName
	}
	if opts.DefaultLocale == "" {
		opts.DefaultLocale = DefaultOptions().DefaultLocale
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}

	files := make(map[fileKey]file)
	sub, err := fs.Sub(defaultFS, "default")
	if err != nil {
		return nil, fmt.Errorf("templates: embedded defaults: %w", err)
	}
	if err := load(files, sub, func(p string) string { return "default/" + p }); err != nil {
		return nil, err
	}
	if opts.Dir != "" {
		fi, err := os.Stat(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("templates: override directory: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("templates: override directory %s is not a directory", opts.Dir)
		}
		dir := opts.Dir
		overrides := make(map[fileKey]file)
		if err := load(overrides, os.DirFS(dir), func(p string) string {
			return filepath.Join(dir, filepath.FromSlash(p))
		}); err != nil {
			return nil, err
		}
		for k, f := range overrides {
			files[k] = f
		}
	}

	sets, err := buildSets(files)
	if err != nil {
		return nil, err
	}

	r := &Renderer{
		appName:  opts.AppName,
		autofill: opts.Autofill(),
		known:    make(map[string]bool),
		resolved: make(map[setKey]*set),
	}
	for k := range sets {
		if !r.known[k.loc] {
			r.known[k.loc] = true
			r.locales = append(r.locales, k.loc)
		}
	}
	slices.Sort(r.locales)

	def, err := canonicalLocale(opts.DefaultLocale)
	if err != nil {
		return nil, fmt.Errorf("%w (default locale)", err)
	}
	if !r.known[def] {
		return nil, fmt.Errorf("templates: default locale %q has no templates (have %s)",
			def, strings.Join(r.locales, ", "))
	}
	r.def = def

	for _, ch := range channels {
		for _, u := range otp.UsageTypes {
			if sets[setKey{ch, def, u}] == nil && sets[setKey{ch, def, otp.Generic}] == nil {
				return nil, fmt.Errorf("templates: default locale %q has no %s template for %s: want %s/%s/%s.* or %s/%s/%s.*",
					def, ch, u, ch, def, u, ch, def, otp.Generic)
			}
		}
	}

	tags := make([]language.Tag, len(r.locales))
	for i, loc := range r.locales {
		tags[i] = language.Make(loc) // canonical names parse without error
		for _, ch := range channels {
			for _, u := range otp.UsageTypes {
				r.resolved[setKey{ch, loc, u}] = firstSet(sets,
					setKey{ch, loc, u}, setKey{ch, loc, otp.Generic},
					setKey{ch, def, u}, setKey{ch, def, otp.Generic})
			}
			inv := otp.OrganizationInvitation
			if s := firstSet(sets, setKey{ch, loc, inv}, setKey{ch, def, inv}); s != nil {
				r.resolved[setKey{ch, loc, inv}] = s
			}
		}
	}
	r.matcher = language.NewMatcher(tags)
	r.same = make(map[string]bool, len(r.locales))
	for _, loc := range r.locales {
		if m, err := r.matchLocale(loc); err == nil && m == loc {
			r.same[loc] = true
		}
	}
	return r, nil
}

// firstSet returns the first of keys that has a set in sets, or nil.
func firstSet(sets map[setKey]*set, keys ...setKey) *set {
	for _, k := range keys {
		if s := sets[k]; s != nil {
			return s
		}
	}
	return nil
}

// load walks fsys, which has the template layout, and adds its files to
// files. name turns a slash-separated path in fsys into the name used in
// errors and as the template name.
func load(files map[fileKey]file, fsys fs.FS, name func(p string) string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("templates: %s: %w", name(p), err)
		}
		if p == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		isDir := d.IsDir()
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := fs.Stat(fsys, p)
			if err != nil {
				return fmt.Errorf("templates: %s: %w", name(p), err)
			}
			if fi.IsDir() {
				return fmt.Errorf("templates: %s: symlinked directories are not supported", name(p))
			}
		}
		elems := strings.Split(p, "/")
		switch len(elems) {
		case 1:
			if !isDir {
				return fmt.Errorf("templates: %s: unexpected file: want <channel>/<locale>/<UsageType>.<part>", name(p))
			}
			if _, ok := channelParts[otp.Channel(elems[0])]; !ok {
				return fmt.Errorf("templates: %s: unknown channel %q (want sms or email)", name(p), elems[0])
			}
			return nil
		case 2:
			if !isDir {
				return fmt.Errorf("templates: %s: unexpected file: want <channel>/<locale>/<UsageType>.<part>", name(p))
			}
			if _, err := canonicalLocale(elems[1]); err != nil {
				return fmt.Errorf("templates: %s: locale directory: %w", name(p), err)
			}
			return nil
		}
		if isDir {
			return fmt.Errorf("templates: %s: unexpected directory: want <channel>/<locale>/<UsageType>.<part>", name(p))
		}
		return loadFile(files, fsys, p, elems, name(p))
	})
}

// loadFile reads and compiles the template file at p (split into elems,
// which are already checked), and adds it to files.
func loadFile(files map[fileKey]file, fsys fs.FS, p string, elems []string, name string) error {
	ch := otp.Channel(elems[0])
	loc, err := canonicalLocale(elems[1])
	if err != nil {
		return fmt.Errorf("templates: %s: locale directory: %w", name, err)
	}
	usage, part, _ := strings.Cut(elems[2], ".")
	u := otp.UsageType(usage)
	if !known(u) {
		return fmt.Errorf("templates: %s: unknown usage type %q (want one of %s)", name, usage, usageNames())
	}
	if !slices.Contains(channelParts[ch], part) {
		return fmt.Errorf("templates: %s: unknown %s part %q (want %s)", name, ch, part, strings.Join(channelParts[ch], ", "))
	}
	k := fileKey{setKey{ch, loc, u}, part}
	if prev, ok := files[k]; ok {
		return fmt.Errorf("templates: %s: same template as %s", name, prev.name)
	}

	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		return fmt.Errorf("templates: %s: %w", name, err)
	}
	text := string(b)
	if !utf8.ValidString(text) {
		return fmt.Errorf("templates: %s: not valid UTF-8", name)
	}
	text = strings.TrimPrefix(text, "\uFEFF") // byte order mark some editors write
	if t, ok := strings.CutSuffix(text, "\n"); ok {
		text = strings.TrimSuffix(t, "\r")
	}
	switch {
	case part == partSubject && strings.ContainsAny(text, "\r\n"):
		return fmt.Errorf("templates: %s: subject must be a single line", name)
	case text == "" && (part == partSubject || ch == otp.SMS):
		return fmt.Errorf("templates: %s: empty template", name)
	case text == "":
		// An empty email body part removes that part.
		files[k] = file{name: name}
		return nil
	}
	t, err := Compile(name, text, part == partHTML)
	if err != nil {
		return err
	}
	if err := t.CheckUsage(u); err != nil {
		return err
	}
	if u == otp.OrganizationInvitation && part != partSubject && !t.Inserts("link") {
		return fmt.Errorf("templates: %s: has no {{link}} placeholder, so the invitation would not carry its link", name)
	}
	files[k] = file{name: name, t: t}
	return nil
}

// buildSets groups files into template sets and checks that every email set
// has a subject and a body.
func buildSets(files map[fileKey]file) (map[setKey]*set, error) {
	keys := make([]fileKey, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	// Sort so that errors do not depend on map order.
	slices.SortFunc(keys, func(a, b fileKey) int {
		return strings.Compare(a.String()+"."+a.part, b.String()+"."+b.part)
	})

	sets := make(map[setKey]*set)
	for _, k := range keys {
		s := sets[k.setKey]
		if s == nil {
			s = &set{}
			sets[k.setKey] = s
		}
		t := files[k].t
		switch k.part {
		case partSubject:
			s.subject = t
		case partText:
			s.text = t
		case partHTML:
			s.html = t
		}
	}
	for _, k := range keys {
		s := sets[k.setKey]
		if k.ch != otp.Email || (s.subject != nil && (s.text != nil || s.html != nil)) {
			continue
		}
		return nil, fmt.Errorf("templates: %s: email template %s needs a %s and a %s or %s part",
			files[k].name, k.setKey, partSubject, partText, partHTML)
	}
	return sets, nil
}

// canonicalLocale parses tag as BCP 47 and returns its canonical form. The
// error wraps ErrBadLocale.
func canonicalLocale(tag string) (string, error) {
	t, err := language.Parse(tag)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrBadLocale, shorten(tag), err)
	}
	if t == language.Und {
		return "", fmt.Errorf("%w %q: undetermined language", ErrBadLocale, shorten(tag))
	}
	return t.String(), nil
}

// shorten cuts s for use in an error message, as s may come from a client.
func shorten(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// MatchLocale returns the name of the locale directory (such as "zh-CN")
// that Render uses for the BCP 47 tag. An empty tag gives the default
// locale. A tag that matches an available locale with high confidence
// ("fr-CA" for "fr", "zh" or "zh-Hans" for "zh-CN", "en-GB" for "en") gives
// that locale; any other well-formed tag gives the default locale. A
// malformed tag, or one with an unknown subtag, is an error wrapping
// ErrBadLocale.
func (r *Renderer) MatchLocale(tag string) (string, error) {
	if r.same[tag] {
		return tag, nil
	}
	return r.matchLocale(tag)
}

func (r *Renderer) matchLocale(tag string) (string, error) {
	tag = strings.TrimSpace(tag)
	if tag == "" {
		return r.def, nil
	}
	t, err := language.Parse(tag)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrBadLocale, shorten(tag), err)
	}
	if s := t.String(); r.known[s] {
		return s, nil
	}
	if _, i, conf := r.matcher.Match(t); conf >= language.High {
		return r.locales[i], nil
	}
	return r.def, nil
}

// Render renders the message for channel ch, usage type u and the BCP 47
// locale tag (matched with MatchLocale) with d. When d.AppName is empty it
// uses Options.AppName. For SMS only Content.Text is set, and, when
// Options configure SMS autofill and the message carries a code,
// Content.Autofill: the lines (Autofill.Lines) that end Content.Text. For email,
// Content.Subject is set and at least one of Text and HTML; line breaks
// that inserted values bring into the subject become spaces.
func (r *Renderer) Render(ch otp.Channel, locale string, u otp.UsageType, d Data) (otp.Content, error) {
	if _, ok := channelParts[ch]; !ok {
		return otp.Content{}, fmt.Errorf("templates: unknown channel %q", ch)
	}
	if !known(u) {
		return otp.Content{}, fmt.Errorf("templates: unknown usage type %q", u)
	}
	loc, err := r.MatchLocale(locale)
	if err != nil {
		return otp.Content{}, err
	}
	s := r.resolved[setKey{ch, loc, u}]
	if s == nil {
		// New makes sure the default locale covers every channel and
		// code-bearing usage type: only OrganizationInvitation gets here.
		return otp.Content{}, fmt.Errorf("%w: no %s template for %s in locale %s or the default locale %s", ErrNoTemplate, ch, u, loc, r.def)
	}
	if d.AppName == "" {
		d.AppName = r.appName
	}
	v := valuesOf(d)
	var c otp.Content
	if s.text != nil {
		c.Text = s.text.execute(v)
	}
	if ch == otp.SMS && Carries(u) && d.Code != "" {
		c.Autofill = r.autofill.Lines(d.Code)
		c.Text = AppendAutofill(c.Text, c.Autofill)
	}
	if ch == otp.Email {
		c.Subject = singleLine(s.subject.execute(v))
		if s.html != nil {
			c.HTML = s.html.execute(v)
		}
	}
	return c, nil
}

// singleLine replaces line breaks in s with spaces.
func singleLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// Has reports whether Render has a template for channel ch, usage type u
// and the BCP 47 locale tag (matched with MatchLocale; a bad tag gives
// false). It is true for every code-bearing usage type and a known channel;
// for OrganizationInvitation, when the locale or the default locale has
// one.
func (r *Renderer) Has(ch otp.Channel, locale string, u otp.UsageType) bool {
	loc, err := r.MatchLocale(locale)
	return err == nil && r.resolved[setKey{ch, loc, u}] != nil
}

// known reports whether u is a usage type that templates can be for.
func known(u otp.UsageType) bool {
	return u == otp.OrganizationInvitation || slices.Contains(otp.UsageTypes, u)
}

// Locales returns the names of the locales that have templates, sorted.
func (r *Renderer) Locales() []string {
	return slices.Clone(r.locales)
}

// Autofill returns the SMS autofill that Render applies.
func (r *Renderer) Autofill() Autofill { return r.autofill }

// SMSTemplate names the template Render uses for an SMS of one locale and
// usage type.
type SMSTemplate struct {
	Locale    string        // a locale directory name, such as "zh-CN"
	UsageType otp.UsageType // what the message is for
	File      string        // the template file, such as "default/sms/fr/SignIn.txt"
}

// SMSTemplates lists, for every locale and usage type that Render has an
// SMS template for, the file it renders, in the order of Locales and
// otp.UsageTypes, OrganizationInvitation last. A file may serve several
// (through Generic or the default locale).
func (r *Renderer) SMSTemplates() []SMSTemplate {
	usages := append(slices.Clone(otp.UsageTypes), otp.OrganizationInvitation)
	var out []SMSTemplate
	for _, loc := range r.locales {
		for _, u := range usages {
			if s := r.resolved[setKey{otp.SMS, loc, u}]; s != nil && s.text != nil {
				out = append(out, SMSTemplate{Locale: loc, UsageType: u, File: s.text.Name()})
			}
		}
	}
	return out
}

// DefaultLocale returns the name of the default locale.
func (r *Renderer) DefaultLocale() string {
	return r.def
}

// usageNames lists the usage types for error messages.
func usageNames() string {
	names := make([]string, 0, len(otp.UsageTypes)+1)
	for _, u := range otp.UsageTypes {
		names = append(names, string(u))
	}
	names = append(names, string(otp.OrganizationInvitation))
	return strings.Join(names, ", ")
}
