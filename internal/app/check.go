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
	return err
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
	Notes         []string       `json:"notes,omitempty"`
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
	}
	if cfg.Dev {
		r.Store = "memory"
	}
	var errs []error
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

// Sample recipients and code for the previews.
const (
	samplePhone = "+14155550100"
	sampleEmail = "user@example.com"
	sampleCode  = "123456"
)

// previewRoute renders the message r would send for usage type u: otpd's
// own template, then what the provider makes of it when it can say.
func previewRoute(r providers.Route, u otp.UsageType, renderer *templates.Renderer, cfg *config.Config) (string, error) {
	data := templates.Data{Code: sampleCode, AppName: cfg.Templates.AppName, TTL: cfg.Service.Code.TTL}
	content, err := renderer.Render(r.Channel, renderer.DefaultLocale(), u, data)
	if err != nil {
		return "", err
	}
	p, ok := r.Sender.(providers.Previewer)
	if !ok {
		return preview(content), nil
	}
	to := samplePhone
	if r.Channel == otp.Email {
		to = sampleEmail
	}
	return p.Preview(otp.Message{
		Channel: r.Channel, To: to, UsageType: u, Locale: renderer.DefaultLocale(), Code: sampleCode,
		AppName: data.AppName, TTL: data.TTL, Content: content, VerificationID: "check",
	})
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
