package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

// checkConfig builds everything a running otpd would except the store
// connection, and renders one message per provider × usage type with a
// sample code, so that a configuration that cannot serve a usage type fails
// here rather than at send time. Secrets never print.
func checkConfig(cfg *config, w io.Writer) error {
	renderer, err := templates.New(templates.Options{
		Dir: cfg.Templates.Dir, DefaultLocale: cfg.Templates.DefaultLocale, AppName: cfg.Templates.AppName,
	})
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	routes, err := buildRoutes(cfg, buildEnv{console: io.Discard, log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	if _, err := providers.NewRouter(routes, providers.RouterOptions{}); err != nil {
		return fmt.Errorf("providers: %w", err)
	}
	if _, _, err := loadTLS(cfg.TLS); err != nil {
		return err
	}
	mode := "redis"
	if cfg.dev {
		mode = "dev (in-memory store)"
	}
	fmt.Fprintf(w, "otpd configuration OK: store %s, grpc %s, http %s, locales %s (default %s)\n",
		mode, cfg.Listen.GRPC, orNone(cfg.Listen.HTTP), strings.Join(renderer.Locales(), ", "), renderer.DefaultLocale())
	fmt.Fprintf(w, "grpc callers: %s\n", describeSecurity(cfg))
	var errs []error
	for _, r := range routes {
		match := "every recipient"
		if len(r.Match) > 0 {
			match = strings.Join(r.Match, ", ")
		}
		fmt.Fprintf(w, "\nprovider %s (%s, %s):\n", r.Name, r.Channel, match)
		if d, ok := r.Sender.(providers.Describer); ok {
			fmt.Fprintf(w, "  settings: %s\n", d.Describe())
		}
		for _, u := range providers.UsageTypes {
			line, err := previewRoute(r, u, renderer, cfg)
			if err != nil {
				errs = append(errs, fmt.Errorf("provider %s, %s: %w", r.Name, u, err))
				continue
			}
			fmt.Fprintf(w, "  %-15s %s\n", u+":", line)
		}
	}
	for _, ch := range []providers.Channel{providers.SMS, providers.Email} {
		if gap := coverage(routes, ch); gap != "" {
			fmt.Fprintf(w, "\nnote: %s\n", gap)
		}
	}
	return errors.Join(errs...)
}

// coverage describes which recipients of ch no provider serves, if any: a
// send to them fails with FAILED_PRECONDITION.
func coverage(routes []providers.Route, ch providers.Channel) string {
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
func previewRoute(r providers.Route, u providers.UsageType, renderer *templates.Renderer, cfg *config) (string, error) {
	data := templates.Data{Code: sampleCode, AppName: cfg.Templates.AppName, TTL: cfg.Code.TTL.std()}
	content, err := renderer.Render(r.Channel, renderer.DefaultLocale(), u, data)
	if err != nil {
		return "", err
	}
	p, ok := r.Sender.(providers.Previewer)
	if !ok {
		return preview(content), nil
	}
	to := samplePhone
	if r.Channel == providers.Email {
		to = sampleEmail
	}
	return p.Preview(providers.Message{
		Channel: r.Channel, To: to, UsageType: u, Locale: renderer.DefaultLocale(), Code: sampleCode,
		AppName: data.AppName, TTL: data.TTL, Content: content, VerificationID: "check",
	})
}

func preview(c providers.Content) string {
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
