package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/aliyundm"
	"github.com/otpd/otpd/providers/console"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/providers/mailgun"
	"github.com/otpd/otpd/providers/tencent"
	"github.com/otpd/otpd/providers/twilio"
)

// buildEnv is what provider constructors may use besides their own
// configuration.
type buildEnv struct {
	console io.Writer // where the console provider prints
	log     *slog.Logger
}

// factory builds one provider type. channels lists the channels the type
// can serve; a provider of a type with two serves both unless its config
// names one.
type factory struct {
	channels []providers.Channel
	build    func(name string, raw []byte, env buildEnv) (providers.Sender, error)
}

// registry maps a configured provider type to its constructor. It lives
// here so that the providers package never imports its children.
var registry = map[string]factory{
	"console": {
		channels: []providers.Channel{providers.SMS, providers.Email},
		build: func(name string, raw []byte, env buildEnv) (providers.Sender, error) {
			cfg, err := console.ParseConfig(raw)
			if err != nil {
				return nil, err
			}
			return console.New(name, cfg, env.console)
		},
	},
	"fake":      vendor(fake.ParseConfig, fake.New, providers.SMS, providers.Email),
	"twilio":    vendor(twilio.ParseConfig, twilio.New, providers.SMS),
	"tencent":   vendor(tencent.ParseConfig, tencent.New, providers.SMS),
	"mailgun":   vendor(mailgun.ParseConfig, mailgun.New, providers.Email),
	"aliyun-dm": vendor(aliyundm.ParseConfig, aliyundm.New, providers.Email),
}

// vendor is the factory of a provider type whose constructor needs nothing
// but its name and its parsed configuration.
func vendor[C any, S providers.Sender](parse func([]byte) (C, error), build func(string, C) (S, error), channels ...providers.Channel) factory {
	return factory{
		channels: channels,
		build: func(name string, raw []byte, _ buildEnv) (providers.Sender, error) {
			cfg, err := parse(raw)
			if err != nil {
				return nil, err
			}
			return build(name, cfg)
		},
	}
}

func registryTypes() []string {
	var out []string
	for k := range registry {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// buildRoutes constructs every configured provider, in file order, as
// routes for the router: one per channel the provider serves. A provider
// that can never serve a usage type, such as a Tencent provider without a
// template for it or for Generic, is an error: otpd finds it at start-up,
// not at send time.
func buildRoutes(c *config, env buildEnv) ([]providers.Route, error) {
	var routes []providers.Route
	var errs []error
	for i, p := range c.Providers {
		f := registry[p.Type]
		s, err := f.build(p.Name, p.raw, env)
		if err != nil {
			errs = append(errs, fmt.Errorf("providers[%d] (%s): %w", i, p.Name, err))
			continue
		}
		if uc, ok := s.(providers.UsageChecker); ok {
			for _, u := range providers.UsageTypes {
				if err := uc.CanServe(u); err != nil {
					errs = append(errs, fmt.Errorf("providers[%d] (%s): cannot serve %s: %w", i, p.Name, u, err))
				}
			}
		}
		channels := f.channels
		if p.Channel != "" {
			channels = []providers.Channel{providers.Channel(p.Channel)}
		}
		for _, ch := range channels {
			routes = append(routes, providers.Route{
				Name: p.Name, Channel: ch, Match: p.Match, Timeout: time.Duration(p.Timeout), Sender: s,
			})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return routes, nil
}

func newRouter(c *config, env buildEnv, reg prometheus.Registerer) (*providers.Router, error) {
	routes, err := buildRoutes(c, env)
	if err != nil {
		return nil, err
	}
	return providers.NewRouter(routes, providers.RouterOptions{
		Attempts:   c.Delivery.Attempts,
		Backoff:    c.Delivery.Backoff.std(),
		Registerer: reg,
		Logger:     env.log,
	})
}
