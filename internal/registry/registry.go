// Package registry maps a provider type of otpd.yaml ("twilio", "mailgun",
// ...) to its package's constructor, and builds the configured providers as
// routes for the providers.Router. It lives apart from package providers so
// that providers never imports its children.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/aliyundm"
	"github.com/otpd/otpd/providers/console"
	"github.com/otpd/otpd/providers/logtohttp"
	"github.com/otpd/otpd/providers/mailgun"
	"github.com/otpd/otpd/providers/tencent"
	"github.com/otpd/otpd/providers/twilio"
)

// Spec is one entry of the providers list of otpd.yaml.
type Spec struct {
	// Name names the provider in metrics, logs and SendCodeResponse.
	Name string `yaml:"name"`
	// Type is a registered provider type (Types).
	Type string `yaml:"type"`
	// Match optionally limits the recipients the provider serves: phone
	// prefixes or email domains.
	Match []string `yaml:"match"`
	// Channel picks the channel of types that can serve both: empty means
	// both for console; type http requires it, since it says which of
	// Logto's two HTTP connectors the endpoint was written for.
	Channel otp.Channel `yaml:"channel"`
	// Timeout bounds one attempt on this provider; 0 leaves it to the call's
	// deadline.
	Timeout time.Duration `yaml:"timeout"`
	// Config is the provider's own configuration: Logto's connector JSON,
	// verbatim, written as YAML or JSON, plus "endpoint".
	Config yaml.Node `yaml:"config"`
}

// Env is what provider constructors may use besides their own
// configuration.
type Env struct {
	// Console is where the console provider prints (standard error if nil).
	Console io.Writer
	// Log receives the providers' own messages.
	Log *slog.Logger
}

// factory builds one provider type. channels lists the channels the type
// can serve; a provider of a type with two serves both unless its spec
// names one, or must name one when pickChannel is set.
type factory struct {
	channels    []otp.Channel
	pickChannel bool
	build       func(name string, raw []byte, env Env) (providers.Sender, error)
}

// types maps a provider type to its constructor, with the test-only types
// of fake.go in binaries built with that tag.
var types = merge(testTypes(), map[string]factory{
	"console": {
		channels: otp.Channels,
		build: func(name string, raw []byte, env Env) (providers.Sender, error) {
			cfg, err := console.ParseConfig(raw)
			if err != nil {
				return nil, err
			}
			return console.New(name, cfg, env.Console)
		},
	},
	"twilio":    vendor(twilio.ParseConfig, twilio.New, otp.SMS),
	"tencent":   vendor(tencent.ParseConfig, tencent.New, otp.SMS),
	"mailgun":   vendor(mailgun.ParseConfig, mailgun.New, otp.Email),
	"aliyun-dm": vendor(aliyundm.ParseConfig, aliyundm.New, otp.Email),
	// An endpoint written for Logto's HTTP SMS connector expects numbers,
	// one for its email connector addresses: each provider serves one.
	"http": pickChannel(vendor(logtohttp.ParseConfig, logtohttp.New, otp.Channels...)),
})

func merge(extra, base map[string]factory) map[string]factory {
	for k, f := range extra {
		base[k] = f
	}
	return base
}

// vendor is the factory of a provider type whose constructor needs nothing
// but its name and its parsed configuration.
func vendor[C any, S providers.Sender](parse func([]byte) (C, error), build func(string, C) (S, error), channels ...otp.Channel) factory {
	return factory{
		channels: channels,
		build: func(name string, raw []byte, _ Env) (providers.Sender, error) {
			cfg, err := parse(raw)
			if err != nil {
				return nil, err
			}
			return build(name, cfg)
		},
	}
}

// pickChannel makes f's providers name their channel.
func pickChannel(f factory) factory {
	f.pickChannel = true
	return f
}

// Types lists the provider types this binary knows, sorted.
func Types() []string {
	out := make([]string, 0, len(types))
	for k := range types {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Validate checks what can be checked of s without building it; errors
// name the key relative to the entry. The provider's own configuration is
// checked by Build, which runs its constructor.
func (s Spec) Validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("name: must be set"))
	}
	switch f, ok := types[s.Type]; {
	case !ok:
		errs = append(errs, fmt.Errorf("type: %q is not a provider type (%s)", s.Type, joinTypes()))
	case s.Channel == "" && f.pickChannel:
		errs = append(errs, errChannelRequired(s.Type))
	case s.Channel == "":
	case len(f.channels) == 1:
		errs = append(errs, fmt.Errorf("channel: type %s always sends %s; leave channel out", s.Type, f.channels[0]))
	case !slices.Contains(otp.Channels, s.Channel):
		errs = append(errs, errors.New("channel: must be sms or email"))
	}
	if s.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if _, err := s.configJSON(); err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	return errors.Join(errs...)
}

// errChannelRequired is the error for a provider of a pickChannel type
// without a channel.
func errChannelRequired(typ string) error {
	return fmt.Errorf("channel: required for type %s: sms or email, the Logto connector the endpoint was written for", typ)
}

func joinTypes() string {
	var s string
	for i, t := range Types() {
		if i > 0 {
			s += ", "
		}
		s += t
	}
	return s
}

// Channels returns the channels the provider of s serves.
func (s Spec) Channels() []otp.Channel {
	if s.Channel != "" {
		return []otp.Channel{s.Channel}
	}
	return types[s.Type].channels
}

// configJSON returns the provider's configuration as the JSON its package
// parses, Logto's connector JSON.
func (s Spec) configJSON() ([]byte, error) {
	v, err := nodeJSON(&s.Config)
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = map[string]any{}
	}
	return json.Marshal(v)
}

// Build constructs every provider of specs, in order, as routes for the
// router: one per channel the provider serves. A provider that can never
// serve a usage type, such as a Tencent provider without a template for it
// or for Generic, is an error: otpd finds it at start-up, not at send time.
// Errors name the entry as providers[i].
func Build(specs []Spec, env Env) ([]providers.Route, error) {
	var routes []providers.Route
	var errs []error
	for i, p := range specs {
		where := fmt.Sprintf("providers[%d] (%s)", i, p.Name)
		f, ok := types[p.Type]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown type %q", where, p.Type))
			continue
		}
		if f.pickChannel && p.Channel == "" {
			errs = append(errs, fmt.Errorf("%s: %w", where, errChannelRequired(p.Type)))
			continue
		}
		raw, err := p.configJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: config: %w", where, err))
			continue
		}
		s, err := f.build(p.Name, raw, env)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if uc, ok := s.(providers.UsageChecker); ok {
			for _, u := range otp.UsageTypes {
				if err := uc.CanServe(u); err != nil {
					errs = append(errs, fmt.Errorf("%s: cannot serve %s: %w", where, u, err))
				}
			}
		}
		for _, ch := range p.Channels() {
			routes = append(routes, providers.Route{
				Name: p.Name, Channel: ch, Match: p.Match, Timeout: p.Timeout, Sender: s,
			})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return routes, nil
}
