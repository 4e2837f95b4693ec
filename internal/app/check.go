package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/registry"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

// Check builds everything a running otpd would except the store
// connection, and renders one message per provider × usage type with a
// sample code, so that a configuration that cannot serve a usage type fails
// here rather than at send time. It prints a report to w. Secrets never
// print.
//
// Every SMS template (otpd's, each locale × usage type, and each SMS
// provider's own) is rendered with a code of code.length digits and
// measured: encoding (GSM-7 or UCS-2), bytes and segments. With
// templates.webotp_domain or templates.android_app_hash set, a template
// whose rendering breaks an autofill format (the WebOTP line not last or
// not alone, over 140 bytes with the app hash) fails the check, and an
// SMS provider that sends no text (a template ID) draws a warning.
func Check(cfg *config.Config, w io.Writer) error {
	r, err := check(cfg)
	if r == nil {
		return err
	}
	mode := "redis"
	if cfg.Dev {
		mode = "dev (in-memory store)"
	}
	fmt.Fprintf(w, "otpd configuration OK: store %s, grpc %s, http %s, locales %s (default %s)\n",
		mode, cfg.Server.Listen.GRPC, orNone(cfg.Server.Listen.HTTP), strings.Join(r.Locales, ", "), r.DefaultLocale)
	fmt.Fprintf(w, "grpc callers: %s\n", r.Callers)
	writeSMS(w, r)
	writeFraud(w, r.Fraud)
	for _, p := range r.Routes {
		match := "every recipient"
		if len(p.Match) > 0 {
			match = strings.Join(p.Match, ", ")
		}
		fmt.Fprintf(w, "\nprovider %s (%s, %s):\n", p.Name, p.Channel, match)
		if p.Settings != "" {
			fmt.Fprintf(w, "  settings: %s\n", p.Settings)
		}
		for _, pv := range p.Previews {
			fmt.Fprintf(w, "  %-15s %s\n", string(pv.UsageType)+":", pv.Message)
		}
	}
	for _, note := range r.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", note)
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "\nwarning: %s\n", warning)
	}
	return err
}

// writeSMS prints the SMS section of Check's report: one line per SMS
// template with its encoding, size and segments.
func writeSMS(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\nsms (sample code %s; autofill: %s):\n", r.SampleCode, r.Autofill)
	for _, m := range r.SMS {
		label, file := m.Locale+"/"+string(m.UsageType), m.Template
		if m.Provider != "" {
			label, file = m.Provider+"/"+m.Template, "("+m.Provider+"'s own template)"
		}
		unit := "septets"
		if m.Encoding == templates.UCS2 {
			unit = "units" // UTF-16 code units
		}
		segs := "segment"
		if m.Segments != 1 {
			segs = "segments"
		}
		line := fmt.Sprintf("  %-31s %s %3d %-7s %3d bytes  %d %-8s  %s",
			label, m.Encoding, m.Units, unit, m.Bytes, m.Segments, segs, file)
		if m.Refused != "" {
			line += "  REFUSED: " + m.Refused
		}
		fmt.Fprintln(w, line)
	}
}

// CheckJSON is Check with a report for programs: on success the effective
// configuration (defaults applied, secrets as "<redacted>", each provider's
// own block replaced by its masked settings) and the previews, as one JSON
// object.
func CheckJSON(cfg *config.Config, w io.Writer) error {
	r, err := check(cfg)
	if err != nil {
		return err
	}
	if r.Config, err = Effective(cfg); err != nil {
		return err
	}
	return writeJSON(w, r)
}

// PrintConfig writes the effective configuration of cfg as JSON (see
// Effective), without building anything: it needs neither the TLS files nor
// the providers' services, so deploy/validate can ask otpd what a mounted
// otpd.yaml means.
func PrintConfig(cfg *config.Config, w io.Writer) error {
	eff, err := Effective(cfg)
	if err != nil {
		return err
	}
	return writeJSON(w, eff)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// Report is what otpd -check found.
type Report struct {
	// Config is the effective configuration, keyed as in otpd.yaml.
	Config        map[string]any `json:"config,omitempty"`
	Store         string         `json:"store"`
	Callers       string         `json:"callers"`
	Locales       []string       `json:"locales"`
	DefaultLocale string         `json:"default_locale"`
	Routes        []RouteReport  `json:"routes"`
	// SampleCode is the code the previews and SMS measures use: as many
	// digits as code.length.
	SampleCode string `json:"sample_code"`
	// Autofill describes templates.webotp_domain and
	// templates.android_app_hash ("off" when neither is set).
	Autofill string `json:"autofill"`
	// SMS measures every SMS text otpd can send: otpd's templates, each
	// locale × usage type, then each SMS provider's own templates.
	SMS      []SMSReport `json:"sms"`
	Notes    []string    `json:"notes,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
	// Fraud is the fraud policy in force and the test recipients.
	Fraud FraudReport `json:"fraud"`
}

// SMSReport is one SMS template rendered with the sample code (and the
// autofill lines, when configured): how it travels, and why it is refused
// if it is.
type SMSReport struct {
	// Template is the file of one of otpd's templates, or the name of
	// Provider's own template (such as "Generic").
	Template string `json:"template"`
	// Locale is set for otpd's templates, Provider for a provider's.
	Locale   string `json:"locale,omitempty"`
	Provider string `json:"provider,omitempty"`
	// UsageType is the (first) usage type the template is for.
	UsageType otp.UsageType `json:"usage_type"`
	templates.SMSSize
	// Refused says which autofill format the text breaks; -check fails.
	Refused string `json:"refused,omitempty"`
}

// RouteReport is one provider on one channel.
type RouteReport struct {
	Name     string          `json:"name"`
	Channel  otp.Channel     `json:"channel"`
	Match    []string        `json:"match,omitempty"`
	Settings string          `json:"settings,omitempty"`
	Previews []PreviewReport `json:"previews"`
}

// PreviewReport is what a provider would send for one usage type.
type PreviewReport struct {
	UsageType otp.UsageType `json:"usage_type"`
	Message   string        `json:"message"`
}

// check does the work of Check; the report is nil when nothing could be
// built, else it holds every preview that rendered and err every one that
// did not.
func check(cfg *config.Config) (*Report, error) {
	renderer, err := templates.New(cfg.Templates)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	routes, err := registry.Build(cfg.Providers, registry.Env{Console: io.Discard, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if _, err := providers.NewRouter(routes, providers.RouterOptions{Delivery: cfg.Delivery}); err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	if _, _, err := grpcauth.LoadTLS(cfg.TLS); err != nil {
		return nil, err
	}
	r := &Report{
		Store: "redis", Callers: grpcauth.Describe(cfg.TLS, cfg.Auth),
		Locales: renderer.Locales(), DefaultLocale: renderer.DefaultLocale(),
		SampleCode: sampleCode(cfg), Autofill: renderer.Autofill().String(),
		Fraud: fraudReport(cfg),
	}
	if cfg.Dev {
		r.Store = "memory"
	}
	errs := checkSMS(r, renderer, routes, cfg)
	for _, rt := range routes {
		rr := RouteReport{Name: rt.Name, Channel: rt.Channel, Match: rt.Match}
		if d, ok := rt.Sender.(providers.Describer); ok {
			rr.Settings = d.Describe()
		}
		for _, u := range otp.UsageTypes {
			line, err := previewRoute(rt, u, renderer, cfg)
			if err != nil {
				errs = append(errs, fmt.Errorf("provider %s, %s: %w", rt.Name, u, err))
				continue
			}
			rr.Previews = append(rr.Previews, PreviewReport{UsageType: u, Message: line})
		}
		r.Routes = append(r.Routes, rr)
	}
	for _, ch := range otp.Channels {
		if gap := coverage(routes, ch); gap != "" {
			r.Notes = append(r.Notes, gap)
		}
	}
	return r, errors.Join(errs...)
}

// Effective is cfg keyed as in otpd.yaml, defaults applied: secrets print
// as "<redacted>" (redact.Secret, and the password in redis.url), durations as "20s", and each provider's
// own block, which may hold credentials, is left out (CheckJSON's routes
// carry its masked settings).
func Effective(cfg *config.Config) (map[string]any, error) {
	c := *cfg
	c.Providers = make([]registry.Spec, len(cfg.Providers))
	for i, p := range cfg.Providers {
		p.Config = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		c.Providers[i] = p
	}
	b, err := yaml.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode effective configuration: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encode effective configuration: %w", err)
	}
	if ps, ok := m["providers"].([]any); ok {
		for _, p := range ps {
			if pm, ok := p.(map[string]any); ok {
				delete(pm, "config")
			}
		}
	}
	return m, nil
}

// coverage describes which recipients of ch no provider serves, if any: a
// send to them fails with FAILED_PRECONDITION.
func coverage(routes []providers.Route, ch otp.Channel) string {
	var matches []string
	for _, r := range routes {
		if r.Channel != ch {
			continue
		}
		if len(r.Match) == 0 {
			return ""
		}
		matches = append(matches, r.Match...)
	}
	if len(matches) == 0 {
		return fmt.Sprintf("no provider sends %s: every %s request fails with FAILED_PRECONDITION", ch, ch)
	}
	return fmt.Sprintf("%s providers serve only %s: other recipients fail with FAILED_PRECONDITION", ch, strings.Join(matches, ", "))
}

// Sample recipients and invitation link for the previews.
const (
	samplePhone = "+14155550100"
	sampleEmail = "user@example.com"
	sampleLink  = "https://auth.example.com/invitation?token=0123456789abcdef"
)

// sampleCode is the code of the previews: 123456 for the default length
// of 6, as many digits as code.length in general.
func sampleCode(cfg *config.Config) string {
	n := min(max(cfg.Service.Code.Length, 1), 10)
	return "1234567890"[:n]
}

// checkSMS renders every SMS template of otpd's (each locale × usage
// type) and of the SMS providers' own, measures them into r.SMS, and
// returns an error for each that breaks an SMS autofill format. It warns
// about SMS providers that send no text, and so cannot carry the autofill
// lines, when autofill is configured.
func checkSMS(r *Report, renderer *templates.Renderer, routes []providers.Route, cfg *config.Config) []error {
	af := renderer.Autofill()
	code := sampleCode(cfg)
	var errs []error
	refused := map[string]bool{} // templates already refused
	measure := func(m SMSReport, what, text string, carries bool) {
		m.SMSSize = templates.MeasureSMS(text)
		if carries {
			if err := af.Check(text, code); err != nil {
				parts := config.Split(err)
				reasons := make([]string, len(parts))
				for i, e := range parts {
					reasons[i] = e.Error()
				}
				m.Refused = strings.Join(reasons, "; ")
				if !refused[what] {
					refused[what] = true
					for _, e := range parts {
						errs = append(errs, fmt.Errorf("%s, rendered with code %s and the lines of %s: %w", what, code, autofillKeys(af), e))
					}
				}
			}
		}
		r.SMS = append(r.SMS, m)
	}

	for _, st := range renderer.SMSTemplates() {
		d := templates.Data{Code: code, AppName: cfg.Templates.AppName, TTL: cfg.Service.Code.TTL}
		if !templates.Carries(st.UsageType) {
			d = templates.Data{AppName: cfg.Templates.AppName, Link: sampleLink}
		}
		c, err := renderer.Render(otp.SMS, st.Locale, st.UsageType, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("sms template %s: %w", st.File, err))
			continue
		}
		measure(SMSReport{Template: st.File, Locale: st.Locale, UsageType: st.UsageType},
			"sms template "+st.File, c.Text, templates.Carries(st.UsageType))
	}

	for _, rt := range routes {
		if rt.Channel != otp.SMS {
			continue
		}
		tx, ok := rt.Sender.(providers.Texter)
		if !ok {
			if !af.IsZero() {
				r.Warnings = append(r.Warnings, fmt.Sprintf(
					"provider %s sends SMS as a template ID with parameters (or the code alone), not as a text: it cannot append the SMS autofill lines (%s); if its messages should carry them, write them into the vendor's template yourself",
					rt.Name, autofillKeys(af)))
			}
			continue
		}
		seen := map[string]bool{}
		for _, u := range otp.UsageTypes {
			msg, err := sampleMessage(rt, u, renderer, cfg)
			if err != nil {
				continue // previewRoute reports it
			}
			text, name, err := tx.Text(msg)
			if err != nil || name == "" || seen[name] {
				continue // an error is previewRoute's; "" is otpd's text, measured above
			}
			seen[name] = true
			measure(SMSReport{Template: name, Provider: rt.Name, UsageType: u},
				"provider "+rt.Name+", sms template "+name, text, true)
		}
	}
	return errs
}

// autofillKeys names the autofill keys that are set, for messages.
func autofillKeys(a templates.Autofill) string {
	var keys []string
	if a.AppHash != "" {
		keys = append(keys, "templates.android_app_hash")
	}
	if a.WebOTPDomain != "" {
		keys = append(keys, "templates.webotp_domain")
	}
	return strings.Join(keys, ", ")
}

// previewRoute renders the message r would send for usage type u: otpd's
// own template, then what the provider makes of it when it can say.
func previewRoute(r providers.Route, u otp.UsageType, renderer *templates.Renderer, cfg *config.Config) (string, error) {
	msg, err := sampleMessage(r, u, renderer, cfg)
	if err != nil {
		return "", err
	}
	p, ok := r.Sender.(providers.Previewer)
	if !ok {
		return preview(msg.Content), nil
	}
	return p.Preview(msg)
}

// sampleMessage is the message the service would hand r for usage type u,
// in the default locale, with the sample code.
func sampleMessage(r providers.Route, u otp.UsageType, renderer *templates.Renderer, cfg *config.Config) (otp.Message, error) {
	code := sampleCode(cfg)
	data := templates.Data{Code: code, AppName: cfg.Templates.AppName, TTL: cfg.Service.Code.TTL}
	content, err := renderer.Render(r.Channel, renderer.DefaultLocale(), u, data)
	if err != nil {
		return otp.Message{}, err
	}
	to := samplePhone
	if r.Channel == otp.Email {
		to = sampleEmail
	}
	return otp.Message{
		Channel: r.Channel, To: to, UsageType: u, Locale: renderer.DefaultLocale(), Code: code,
		AppName: data.AppName, TTL: data.TTL, Content: content, VerificationID: "check",
	}, nil
}

func preview(c otp.Content) string {
	text := strings.Join(strings.Fields(c.Text), " ")
	if c.Subject != "" {
		return fmt.Sprintf("subject %q, text %q, html %d bytes", c.Subject, text, len(c.HTML))
	}
	return fmt.Sprintf("%q", text)
}

func orNone(s string) string {
	if s == "" {
		return "(off)"
	}
	return s
}
