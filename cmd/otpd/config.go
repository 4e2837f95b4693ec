package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/service"
)

// config is otpd.yaml. Defaults are set by defaultConfig and documented in
// README.md and deploy/otpd.example.yaml.
type config struct {
	Listen struct {
		// GRPC is host:port or unix:///path/to.sock.
		GRPC string `yaml:"grpc"`
		// HTTP serves /metrics, /healthz and /readyz; empty disables it.
		HTTP string `yaml:"http"`
	} `yaml:"listen"`
	TLS       tlsConfig     `yaml:"tls"`
	Auth      authConfig    `yaml:"auth"`
	Redis     redisConfig   `yaml:"redis"`
	Secret    redact.Secret `yaml:"secret"`
	Code      codeConfig    `yaml:"code"`
	Limits    limitsConfig  `yaml:"limits"`
	Templates struct {
		Dir           string `yaml:"dir"`
		DefaultLocale string `yaml:"default_locale"`
		AppName       string `yaml:"app_name"`
	} `yaml:"templates"`
	Providers []providerConfig `yaml:"providers"`
	Delivery  struct {
		// Attempts is how many rounds over a channel's providers a send may
		// make, all within the call's deadline.
		Attempts int      `yaml:"attempts"`
		Backoff  duration `yaml:"backoff"`
	} `yaml:"delivery"`
	SendTimeout    duration `yaml:"send_timeout"`
	IdempotencyTTL duration `yaml:"idempotency_ttl"`
	Shutdown       struct {
		// Delay keeps serving (health NOT_SERVING) before draining, so load
		// balancers notice first.
		Delay duration `yaml:"delay"`
		// Timeout bounds the drain of in-flight calls.
		Timeout duration `yaml:"timeout"`
	} `yaml:"shutdown"`
	Health struct {
		// Interval is how often the store is pinged for health.
		Interval duration `yaml:"interval"`
	} `yaml:"health"`
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`

	// dev is set for the built-in dev configuration, which runs with a
	// random devSecret.
	dev       bool
	devSecret []byte
}

type redisConfig struct {
	URL        string        `yaml:"url"`
	Addrs      []string      `yaml:"addrs"`
	MasterName string        `yaml:"master_name"`
	Cluster    bool          `yaml:"cluster"`
	Username   string        `yaml:"username"`
	Password   redact.Secret `yaml:"password"`
	DB         int           `yaml:"db"`
	TLS        bool          `yaml:"tls"`
	Prefix     string        `yaml:"prefix"`
	PoolSize   int           `yaml:"pool_size"`
	Timeout    duration      `yaml:"timeout"`
}

type codeConfig struct {
	Length      int      `yaml:"length"`
	TTL         duration `yaml:"ttl"`
	MaxAttempts int      `yaml:"max_attempts"`
}

type limitsConfig struct {
	ResendInterval     duration     `yaml:"resend_interval"`
	PerRecipient       windowConfig `yaml:"per_recipient"`
	PerIP              windowConfig `yaml:"per_ip"`
	PerCountry         windowConfig `yaml:"per_country"`
	VerifyPerRecipient windowConfig `yaml:"verify_per_recipient"`
}

type windowConfig struct {
	Count  int      `yaml:"count"`
	Window duration `yaml:"window"`
}

type providerConfig struct {
	Name  string   `yaml:"name"`
	Type  string   `yaml:"type"`
	Match []string `yaml:"match"`
	// Channel picks the channel of providers that can serve both (console,
	// fake); empty means both.
	Channel string `yaml:"channel"`
	// Timeout bounds one attempt on this provider.
	Timeout duration `yaml:"timeout"`
	// Config is the provider's own configuration: Logto's connector JSON,
	// verbatim, plus "endpoint".
	Config yaml.Node `yaml:"config"`

	raw []byte // Config as JSON
}

// duration is a time.Duration written as "60s", "10m" or "1h30m".
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not a duration such as 500ms, 60s or 10m", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

func (d duration) std() time.Duration { return time.Duration(d) }

func defaultConfig() *config {
	def := service.DefaultConfig()
	var c config
	c.Listen.GRPC = "127.0.0.1:50051"
	c.Listen.HTTP = "127.0.0.1:9464"
	c.Redis.Prefix = "otpd:"
	c.Redis.Timeout = duration(time.Second)
	c.Code = codeConfig{Length: def.CodeLength, TTL: duration(def.CodeTTL), MaxAttempts: def.MaxAttempts}
	w := func(sw service.Window) windowConfig {
		return windowConfig{Count: sw.Count, Window: duration(sw.Window)}
	}
	c.Limits = limitsConfig{
		ResendInterval:     duration(def.ResendInterval),
		PerRecipient:       w(def.PerRecipient),
		PerIP:              w(def.PerIP),
		PerCountry:         w(def.PerCountry),
		VerifyPerRecipient: w(def.VerifyPerRecipient),
	}
	c.Templates.DefaultLocale = "en"
	c.Templates.AppName = def.AppName
	c.Delivery.Attempts = 2
	c.Delivery.Backoff = duration(200 * time.Millisecond)
	c.SendTimeout = duration(def.SendTimeout)
	c.IdempotencyTTL = duration(def.IdempotencyTTL)
	c.Shutdown.Timeout = duration(20 * time.Second)
	c.Health.Interval = duration(2 * time.Second)
	c.Log.Level = "info"
	c.Auth.OpenHealth = true
	return &c
}

// devConfig is what otpd runs with when no configuration is given: an
// in-memory store and the console provider on both channels.
func devConfig() *config {
	c := defaultConfig()
	c.dev = true
	c.Providers = []providerConfig{{Name: "console", Type: "console"}}
	return c
}

// loadConfig reads a configuration file, expands ${ENV} references in its
// values, decodes it strictly over the defaults and validates it.
func loadConfig(path string, getenv func(string) string) (*config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(b, getenv)
}

func parseConfig(b []byte, getenv func(string) string) (*config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, errors.New("parse config: the file is empty")
	}
	expanded := map[*yaml.Node]bool{}
	if err := expandEnv(root.Content[0], "", getenv, expanded); err != nil {
		return nil, err
	}
	// An unknown key is a typo, not a setting to ignore; a value of the
	// wrong type is reported with its key.
	if err := checkNode(root.Content[0], reflect.TypeFor[config](), "", expanded); err != nil {
		return nil, err
	}
	c := defaultConfig()
	if err := root.Content[0].Decode(c); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	for i := range c.Providers {
		p := &c.Providers[i]
		v, err := nodeJSON(&p.Config)
		if err != nil {
			return nil, fmt.Errorf("providers[%d].config: %w", i, err)
		}
		if v == nil {
			v = map[string]any{}
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("providers[%d].config: %w", i, err)
		}
		p.raw = raw
	}
	return c, c.validate()
}

// nodeJSON turns a provider's config block into JSON-ready values. Scalars
// keep their text unless they are plainly a number, a boolean or null, so
// that a date-like or digit-only string reaches the provider as written.
func nodeJSON(n *yaml.Node) (any, error) {
	switch n.Kind {
	case 0:
		return nil, nil
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return nodeJSON(n.Content[0])
	case yaml.AliasNode:
		return nodeJSON(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := nodeJSON(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := nodeJSON(c)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		if json.Valid([]byte(n.Value)) {
			return json.Number(n.Value), nil
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return f, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!null":
		return nil, nil
	}
	return n.Value, nil
}

var nodeType = reflect.TypeFor[yaml.Node]()

// checkNode checks n against the YAML shape of t: every key must be a field,
// every value must decode into its field. Errors name the key.
//
// A value that came from the environment is a string until here; where the
// field wants a number or a boolean, it is read as one.
func checkNode(n *yaml.Node, t reflect.Type, path string, expanded map[*yaml.Node]bool) error {
	if t == nodeType {
		return nil
	}
	switch {
	case t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType):
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: must be a mapping", orRoot(path))
		}
		fields := map[string]reflect.StructField{}
		for i := range t.NumField() {
			f := t.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
				fields[name] = f
			}
		}
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			sub := key
			if path != "" {
				sub = path + "." + key
			}
			f, ok := fields[key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key (line %d)", sub, n.Content[i].Line))
				continue
			}
			if err := checkNode(n.Content[i+1], f.Type, sub, expanded); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: must be a list", path)
		}
		var errs []error
		for i, c := range n.Content {
			if err := checkNode(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", expanded); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	if expanded[n] {
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64, reflect.Bool:
			n.Tag = "" // resolve "8" as !!int, "true" as !!bool
		}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		msg := err.Error()
		if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
			msg = te.Errors[0]
		}
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(msg, "yaml: "))
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func orRoot(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

var envRef = regexp.MustCompile(`\$\$|\$\{[^}]*\}?`)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv replaces ${NAME} in every scalar value with the environment
// variable's value ("$$" stands for "$"). An unset variable, or a "${" that
// is not a well-formed reference, is an error that names the key, so a
// missing secret never becomes an empty one. Expanded nodes are recorded in
// expanded.
func expandEnv(n *yaml.Node, path string, getenv func(string) string, expanded map[*yaml.Node]bool) error {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if path != "" {
				key = path + "." + key
			}
			if err := expandEnv(n.Content[i+1], key, getenv, expanded); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := expandEnv(c, path+"["+strconv.Itoa(i)+"]", getenv, expanded); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return nil
		}
		var missing, malformed []string
		out := envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			if m == "$$" {
				return "$"
			}
			name := strings.TrimSuffix(m[2:], "}")
			if !strings.HasSuffix(m, "}") || !envName.MatchString(name) {
				malformed = append(malformed, m)
				return m
			}
			v := getenv(name)
			if v == "" {
				missing = append(missing, name)
			}
			return v
		})
		if len(malformed) > 0 {
			return fmt.Errorf("%s: %q is not a ${NAME} reference (NAME: letters, digits, _); write $$ for a literal $", path, malformed[0])
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: environment variable %s is not set", path, strings.Join(missing, ", "))
		}
		if out != n.Value {
			n.Value = out
			// An expanded value is a string whatever it looks like (a
			// secret of digits must not turn into a number), unless the
			// field it fills wants a number (checkNode).
			n.Tag = "!!str"
			expanded[n] = true
		}
	}
	return nil
}

// validate checks the whole configuration and names the key of every
// problem.
func (c *config) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.Listen.GRPC == "" {
		bad("listen.grpc", "must be set")
	} else if err := checkListen(c.Listen.GRPC); err != nil {
		bad("listen.grpc", "%v", err)
	}
	c.validateAuth(bad)
	if c.Listen.HTTP != "" {
		if err := checkListen(c.Listen.HTTP); err != nil {
			bad("listen.http", "%v", err)
		}
	}
	if !c.dev {
		r := c.Redis
		switch {
		case r.URL == "" && len(r.Addrs) == 0:
			bad("redis", "set url or addrs")
		case r.URL != "" && len(r.Addrs) > 0:
			bad("redis", "set url or addrs, not both")
		case r.MasterName != "" && r.Cluster:
			bad("redis.cluster", "cannot be combined with master_name")
		}
		if r.URL != "" {
			// A URL carries these itself; a second place to set them would
			// be silently ignored.
			for key, set := range map[string]bool{
				"username": r.Username != "", "db": r.DB != 0, "tls": r.TLS,
				"master_name": r.MasterName != "", "cluster": r.Cluster,
			} {
				if set {
					bad("redis."+key, "cannot be combined with redis.url: put it in the URL (redis[s]://user:password@host:port/db) or use addrs")
				}
			}
		}
		if r.Timeout.std() < 10*time.Millisecond {
			bad("redis.timeout", "must be at least 10ms")
		}
		if r.PoolSize < 0 {
			bad("redis.pool_size", "must not be negative")
		}
		if len(c.Secret) < service.MinSecretLen {
			bad("secret", "must be at least %d bytes (set OTPD_HMAC_KEY to a long random value)", service.MinSecretLen)
		}
	}
	if err := c.serviceConfig().Validate(); err != nil {
		for _, e := range splitJoined(err) {
			if c.dev || !strings.HasPrefix(e.Error(), "secret:") {
				errs = append(errs, e)
			}
		}
	}
	if c.Delivery.Attempts < 1 || c.Delivery.Attempts > 10 {
		bad("delivery.attempts", "must be between 1 and 10")
	}
	if c.Delivery.Backoff.std() < time.Millisecond {
		bad("delivery.backoff", "must be at least 1ms")
	}
	if c.Shutdown.Timeout.std() < time.Second {
		bad("shutdown.timeout", "must be at least 1s")
	}
	if c.Shutdown.Delay < 0 {
		bad("shutdown.delay", "must not be negative")
	}
	if c.Health.Interval.std() < 100*time.Millisecond {
		bad("health.interval", "must be at least 100ms")
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if len(c.Providers) == 0 {
		bad("providers", "configure at least one provider")
	}
	seen := map[string]bool{}
	for i, p := range c.Providers {
		key := "providers[" + strconv.Itoa(i) + "]"
		switch {
		case p.Name == "":
			bad(key+".name", "must be set")
		case seen[p.Name]:
			bad(key+".name", "%q is used twice", p.Name)
		}
		seen[p.Name] = true
		f, ok := registry[p.Type]
		if !ok {
			bad(key+".type", "%q is not a provider type (%s)", p.Type, strings.Join(registryTypes(), ", "))
			continue
		}
		if p.Channel != "" {
			if len(f.channels) == 1 {
				bad(key+".channel", "type %s always sends %s; leave channel out", p.Type, f.channels[0])
			} else if p.Channel != string(providers.SMS) && p.Channel != string(providers.Email) {
				bad(key+".channel", "must be sms or email")
			}
		}
		if p.Timeout < 0 {
			bad(key+".timeout", "must not be negative")
		}
	}
	return errors.Join(errs...)
}

func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func checkListen(addr string) error {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if path == "" {
			return errors.New("unix:// needs a socket path, such as unix:///run/otpd/otpd.sock")
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port or unix:///path", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has no valid port", addr)
	}
	return nil
}

func (c *config) serviceConfig() service.Config {
	w := func(wc windowConfig) service.Window { return service.Window{Count: wc.Count, Window: wc.Window.std()} }
	secret := []byte(c.Secret.Reveal())
	if c.dev {
		secret = c.devSecret
		if secret == nil {
			secret = bytes.Repeat([]byte{1}, service.MinSecretLen) // for validation only
		}
	}
	return service.Config{
		Secret:             secret,
		CodeLength:         c.Code.Length,
		CodeTTL:            c.Code.TTL.std(),
		MaxAttempts:        c.Code.MaxAttempts,
		ResendInterval:     c.Limits.ResendInterval.std(),
		PerRecipient:       w(c.Limits.PerRecipient),
		PerIP:              w(c.Limits.PerIP),
		PerCountry:         w(c.Limits.PerCountry),
		VerifyPerRecipient: w(c.Limits.VerifyPerRecipient),
		SendTimeout:        c.SendTimeout.std(),
		IdempotencyTTL:     c.IdempotencyTTL.std(),
		AppName:            c.Templates.AppName,
	}
}
