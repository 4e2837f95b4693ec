package config_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/config/configtest"
	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/internal/registry"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/templates"
)

// errLines returns the messages of every error joined in err.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	for _, e := range config.Split(err) {
		out = append(out, e.Error())
	}
	return out
}

// wantKeyErrors fails unless err holds, for every key, an error that starts
// with "<key>: " and contains the matching fragment (if any).
func wantKeyErrors(tb testing.TB, err error, keys []string, fragments ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("no error, want errors naming %q", keys)
	}
	lines := errLines(err)
	for i, key := range keys {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, key+": ") && (i >= len(fragments) || strings.Contains(l, fragments[i])) {
				found = true
				break
			}
		}
		if !found {
			frag := ""
			if i < len(fragments) {
				frag = fragments[i]
			}
			tb.Errorf("no error starts with %q (and contains %q); got:\n%s", key+": ", frag, strings.Join(lines, "\n"))
		}
	}
}

// keyedError matches an error that starts with the configuration key it is
// about: "limits.per_ip.count: ...", "providers[1].name: ...".
var keyedError = regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?)*: `)

// wantAllKeyed fails unless every error joined in err starts with a key.
func wantAllKeyed(tb testing.TB, err error) {
	tb.Helper()
	for _, l := range errLines(err) {
		if !keyedError.MatchString(l) {
			tb.Errorf("error does not start with the key it is about: %q", l)
		}
	}
}

// providerConfig decodes the config block of providers[i] as YAML sees it
// after ${ENV} expansion, normalised through JSON. (What package registry
// makes of a block, the JSON the provider parses, is tested there.)
func providerConfig(tb testing.TB, c *config.Config, i int) any {
	tb.Helper()
	if i >= len(c.Providers) {
		tb.Fatalf("config has %d providers, want at least %d", len(c.Providers), i+1)
	}
	var v any
	if err := c.Providers[i].Config.Decode(&v); err != nil {
		tb.Fatalf("providers[%d].config does not decode: %v", i, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("providers[%d].config is not JSON-ready: %v", i, err)
	}
	return jsonOf(tb, string(b))
}

// jsonOf decodes a JSON literal.
func jsonOf(tb testing.TB, s string) any {
	tb.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		tb.Fatalf("bad JSON literal in test: %v", err)
	}
	return v
}

// authToken is an auth.tokens entry.
func authToken(name, sha256 string) grpcauth.Token { return grpcauth.Token{Name: name, SHA256: sha256} }

// hexDigest is a well-formed token hash: 64 times the hex digit d.
func hexDigest(d byte) string { return strings.Repeat(string(d), 64) }

// mustParse parses yaml with getenv and fails on any error.
func mustParse(tb testing.TB, yaml string, getenv func(string) string) *config.Config {
	tb.Helper()
	c, err := config.Parse([]byte(yaml), getenv)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return c
}

func TestDefaultsWhenKeysAreAbsent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
	}{
		{"minimal", configtest.MinimalYAML},
		{"empty sections", configtest.MinimalYAML + "code: {}\nlimits: {}\ntemplates: {}\ndelivery: {}\nlog: {}\nlisten: {}\n" +
			"shutdown: {}\nhealth: {}\nauth: {}\ntls: {}\n"},
		{"empty window", configtest.MinimalYAML + "limits: {per_ip: {}}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, tt.yaml, configtest.KeyEnv())
			want := service.DefaultConfig()
			want.Secret = redact.Secret(configtest.TestKey)
			if !reflect.DeepEqual(c.Service, want) {
				t.Errorf("service config:\n got %+v\nwant %+v", c.Service, want)
			}
			// Everything else is Default with the three keys given.
			wantC := config.Default()
			wantC.Redis.URL = "redis://127.0.0.1:6379/0"
			wantC.Service.Secret = redact.Secret(configtest.TestKey)
			if len(c.Providers) != 1 {
				t.Fatalf("%d providers, want 1", len(c.Providers))
			}
			c.Providers, wantC.Providers = nil, nil
			if !reflect.DeepEqual(c, wantC) {
				t.Errorf("config:\n got %+v\nwant %+v", c, wantC)
			}
			// The documented defaults, spelled out.
			if c.Service.Code.Length != 6 || c.Service.Code.TTL != 10*time.Minute || c.Service.Code.MaxAttempts != 5 ||
				c.Service.Limits.ResendInterval != time.Minute {
				t.Errorf("documented defaults changed: code %+v, resend %v", c.Service.Code, c.Service.Limits.ResendInterval)
			}
			if c.Server.Listen.GRPC != "127.0.0.1:50051" || c.Server.Listen.HTTP != "127.0.0.1:9464" ||
				c.Server.Shutdown.Timeout != 20*time.Second || c.Server.Health.Interval != 2*time.Second {
				t.Errorf("documented server defaults changed: %+v", c.Server)
			}
			if !c.Auth.OpenHealth || c.Auth.OpenReflection || c.Redis.Prefix != "otpd:" || c.Redis.Timeout != time.Second ||
				c.Delivery.Attempts != 2 || c.Delivery.Backoff != 200*time.Millisecond || c.Log.Level != "info" ||
				c.Templates.DefaultLocale != "en" || c.Templates.AppName != "otpd" {
				t.Errorf("documented defaults changed: auth %+v, redis prefix %q timeout %v, delivery %+v, log %q, templates %+v",
					c.Auth, c.Redis.Prefix, c.Redis.Timeout, c.Delivery, c.Log.Level, c.Templates)
			}
			if c.Dev {
				t.Error("a parsed configuration is in dev mode")
			}
		})
	}
}

func TestPartialOverrideKeepsOtherDefaults(t *testing.T) {
	t.Parallel()
	c := mustParse(t, configtest.MinimalYAML+"limits:\n  per_ip: {count: 50}\ncode: {length: 8}\nshutdown: {delay: 5s}\nlisten: {http: \"\"}\n", configtest.KeyEnv())
	def := service.DefaultConfig()
	got := c.Service
	if got.Limits.PerIP != (service.Window{Count: 50, Window: def.Limits.PerIP.Window}) {
		t.Errorf("per_ip = %+v, want count 50 with the default window %v", got.Limits.PerIP, def.Limits.PerIP.Window)
	}
	if got.Limits.PerRecipient != def.Limits.PerRecipient {
		t.Errorf("per_recipient = %+v, want the default %+v", got.Limits.PerRecipient, def.Limits.PerRecipient)
	}
	if got.Code.Length != 8 || got.Code.TTL != def.Code.TTL || got.Code.MaxAttempts != def.Code.MaxAttempts {
		t.Errorf("code = %+v, want length 8 with default ttl and attempts", got.Code)
	}
	if c.Server.Shutdown.Delay != 5*time.Second || c.Server.Shutdown.Timeout != 20*time.Second {
		t.Errorf("shutdown = %+v, want delay 5s with the default timeout", c.Server.Shutdown)
	}
	if c.Server.Listen.HTTP != "" || c.Server.Listen.GRPC != "127.0.0.1:50051" {
		t.Errorf("listen = %+v, want http off and the default grpc", c.Server.Listen)
	}
}

func TestDesignExample(t *testing.T) {
	t.Parallel()
	c := mustParse(t, configtest.DesignExampleYAML, configtest.EnvFrom(configtest.DesignEnv))

	if c.Server.Listen.GRPC != "0.0.0.0:50051" || c.Server.Listen.HTTP != "0.0.0.0:9464" {
		t.Errorf("listen = %+v", c.Server.Listen)
	}
	if got := c.Service.Secret.Reveal(); got != configtest.TestKey {
		t.Errorf("secret = %q, want the value of OTPD_HMAC_KEY", got)
	}
	want := service.DefaultConfig()
	want.Secret = redact.Secret(configtest.TestKey)
	if !reflect.DeepEqual(c.Service, want) {
		t.Errorf("service config:\n got %+v\nwant %+v", c.Service, want)
	}
	if want := (templates.Options{DefaultLocale: "en", AppName: "Acme"}); c.Templates != want {
		t.Errorf("templates = %+v, want %+v", c.Templates, want)
	}

	wantProviders := []struct {
		name, typ string
		match     []string
		config    string
	}{
		{"tencent-cn", "tencent", []string{"+86"}, `{"accessKeyId": "AKIDtencent", "accessKeySecret": "tencent-secret-value",
			"signName": "Acme", "region": "ap-guangzhou", "sdkAppId": "1400000000",
			"templates": [{"usageType": "Generic", "templateCode": "1234567"}]}`},
		{"twilio", "twilio", nil, `{"accountSID": "AC0123456789abcdef", "authToken": "twiliotokenvalue0123456789abcdef",
			"fromMessagingServiceSID": "MG0000", "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]}`},
		{"mailgun", "mailgun", nil, `{"domain": "mg.example.com", "apiKey": "key-mailgun-value", "from": "Acme <no-reply@mg.example.com>",
			"deliveries": {"Generic": {"subject": "Your code", "html": "<p>{{code}}</p>", "text": "{{code}}"}}}`},
		{"aliyun", "aliyun-dm", nil, `{"accessKeyId": "LTAIaliyun", "accessKeySecret": "aliyun-secret-value", "accountName": "no-reply@dm.example.com",
			"templates": [{"usageType": "Generic", "subject": "Your code", "content": "<p>{{code}}</p>"}]}`},
	}
	if len(c.Providers) != len(wantProviders) {
		t.Fatalf("%d providers, want %d", len(c.Providers), len(wantProviders))
	}
	for i, wp := range wantProviders {
		p := c.Providers[i]
		if p.Name != wp.name || p.Type != wp.typ || !slices.Equal(p.Match, wp.match) || p.Channel != "" || p.Timeout != 0 {
			t.Errorf("providers[%d] = %s/%s/%q/%q/%v, want %s/%s/%q with no channel or timeout",
				i, p.Name, p.Type, p.Match, p.Channel, p.Timeout, wp.name, wp.typ, wp.match)
		}
		if got, want := providerConfig(t, c, i), jsonOf(t, wp.config); !reflect.DeepEqual(got, want) {
			t.Errorf("providers[%d].config:\n got %v\nwant %s", i, got, wp.config)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Parallel()
	digits := "12345678901234567890123456789012345"
	tests := []struct {
		name string
		yaml string
		env  func(string) string
		// check inspects the parsed configuration.
		check func(tb testing.TB, c *config.Config)
	}{
		{
			name: "secret of only digits stays a string",
			yaml: "redis: {url: \"redis://r:6379\"}\nsecret: \"${KEY}\"\nproviders: [{name: c, type: console}]\n",
			env:  configtest.EnvFrom(nil, "KEY", digits),
			check: func(tb testing.TB, c *config.Config) {
				if got := c.Service.Secret.Reveal(); got != digits {
					tb.Errorf("secret = %q, want %q", got, digits)
				}
			},
		},
		{
			name: "unquoted secret of only digits stays a string",
			yaml: "redis: {url: \"redis://r:6379\"}\nsecret: ${KEY}\nproviders: [{name: c, type: console}]\n",
			env:  configtest.EnvFrom(nil, "KEY", digits),
			check: func(tb testing.TB, c *config.Config) {
				if got := c.Service.Secret.Reveal(); got != digits {
					tb.Errorf("secret = %q, want %q", got, digits)
				}
			},
		},
		{
			name: "digits in a provider config stay a string",
			yaml: configtest.MinimalYAML[:strings.LastIndex(configtest.MinimalYAML, "    type: console")] +
				"    type: tencent\n    config:\n      sdkAppId: ${APP_ID}\n      quoted: \"${APP_ID}\"\n      templates: [{usageType: Generic, templateCode: \"${TPL}\"}]\n",
			env: configtest.KeyEnv("APP_ID", "1400000000", "TPL", "0123"),
			check: func(tb testing.TB, c *config.Config) {
				want := jsonOf(tb, `{"sdkAppId": "1400000000", "quoted": "1400000000", "templates": [{"usageType": "Generic", "templateCode": "0123"}]}`)
				if got := providerConfig(tb, c, 0); !reflect.DeepEqual(got, want) {
					tb.Errorf("config = %v, want %v", got, want)
				}
				// The tag is what registry's JSON conversion goes by.
				if n := c.Providers[0].Config.Content[1]; n.Value != "1400000000" || n.ShortTag() != "!!str" {
					tb.Errorf("expanded sdkAppId = %q tagged %s, want \"1400000000\" tagged !!str", n.Value, n.ShortTag())
				}
			},
		},
		{
			name: "a number from the environment fills a number field",
			yaml: configtest.MinimalYAML + "code:\n  length: ${LEN}\n  max_attempts: ${TRIES}\nauth:\n  open_health: ${OPEN}\n" +
				"delivery:\n  attempts: ${ATTEMPTS}\nlimits:\n  per_ip:\n    count: ${PER_IP}\n",
			env: configtest.KeyEnv("LEN", "8", "TRIES", "3", "OPEN", "false", "ATTEMPTS", "4", "PER_IP", "50"),
			check: func(tb testing.TB, c *config.Config) {
				if c.Service.Code.Length != 8 || c.Service.Code.MaxAttempts != 3 || c.Auth.OpenHealth ||
					c.Delivery.Attempts != 4 || c.Service.Limits.PerIP.Count != 50 {
					tb.Errorf("code %+v, open_health %v, delivery.attempts %d, per_ip %+v: want 8, 3, false, 4, 50",
						c.Service.Code, c.Auth.OpenHealth, c.Delivery.Attempts, c.Service.Limits.PerIP)
				}
			},
		},
		{
			name: "a number from the environment fills a string field as written",
			yaml: strings.Replace(configtest.MinimalYAML, "redis:\n", "redis:\n  prefix: ${PREFIX}\n  pool_size: ${POOL}\n", 1),
			env:  configtest.KeyEnv("PREFIX", "007", "POOL", "20"),
			check: func(tb testing.TB, c *config.Config) {
				if c.Redis.PoolSize != 20 {
					tb.Errorf("redis.pool_size = %d, want 20", c.Redis.PoolSize)
				}
				if c.Redis.Prefix != "007" {
					tb.Errorf("redis.prefix = %q, want the string \"007\"", c.Redis.Prefix)
				}
			},
		},
		{
			name: "double dollar is a dollar",
			yaml: "redis: {url: \"redis://r:6379\"}\nsecret: \"pa$$word-0123456789abcdef0123456789\"\nproviders: [{name: c, type: console}]\n",
			env:  configtest.EnvFrom(nil),
			check: func(tb testing.TB, c *config.Config) {
				if got, want := c.Service.Secret.Reveal(), "pa$word-0123456789abcdef0123456789"; got != want {
					tb.Errorf("secret = %q, want %q", got, want)
				}
			},
		},
		{
			name: "escaped reference stays literal",
			yaml: "redis: {url: \"redis://r:6379\"}\nsecret: \"$${NOT_A_VAR}-0123456789abcdef0123456789\"\nproviders: [{name: c, type: console}]\n",
			env:  configtest.EnvFrom(nil, "NOT_A_VAR", "expanded"),
			check: func(tb testing.TB, c *config.Config) {
				if got, want := c.Service.Secret.Reveal(), "${NOT_A_VAR}-0123456789abcdef0123456789"; got != want {
					tb.Errorf("secret = %q, want %q", got, want)
				}
			},
		},
		{
			name: "a lone dollar is kept",
			yaml: "redis: {url: \"redis://r:6379\"}\nsecret: \"cost$5-0123456789abcdef0123456789abc\"\nproviders: [{name: c, type: console}]\n",
			env:  configtest.EnvFrom(nil),
			check: func(tb testing.TB, c *config.Config) {
				if got, want := c.Service.Secret.Reveal(), "cost$5-0123456789abcdef0123456789abc"; got != want {
					tb.Errorf("secret = %q, want %q", got, want)
				}
			},
		},
		{
			name: "text around a reference",
			yaml: strings.Replace(configtest.MinimalYAML, `"redis://127.0.0.1:6379/0"`, `"redis://:${REDIS_PASSWORD}@redis.internal:6379/${REDIS_DB}"`, 1),
			env:  configtest.KeyEnv("REDIS_PASSWORD", "p@ss", "REDIS_DB", "2"),
			check: func(tb testing.TB, c *config.Config) {
				if got, want := c.Redis.URL, "redis://:p@ss@redis.internal:6379/2"; got != want {
					tb.Errorf("redis.url = %q, want %q", got, want)
				}
			},
		},
		{
			name: "references in lists",
			yaml: configtest.MinimalYAML + "    match: [\"${CC}\", \"+1${AREA}\"]\n",
			env:  configtest.KeyEnv("CC", "+86", "AREA", "415"),
			check: func(tb testing.TB, c *config.Config) {
				if got, want := c.Providers[0].Match, []string{"+86", "+1415"}; !slices.Equal(got, want) {
					tb.Errorf("match = %q, want %q", got, want)
				}
			},
		},
		{
			name: "durations and channels from the environment",
			yaml: configtest.MinimalYAML + "    channel: ${CHANNEL}\n    timeout: ${TIMEOUT}\ncode: {ttl: \"${TTL}\"}\n",
			env:  configtest.KeyEnv("CHANNEL", "email", "TIMEOUT", "3s", "TTL", "5m"),
			check: func(tb testing.TB, c *config.Config) {
				p := c.Providers[0]
				if p.Channel != otp.Email || p.Timeout != 3*time.Second || c.Service.Code.TTL != 5*time.Minute {
					tb.Errorf("channel %q, timeout %v, code.ttl %v: want email, 3s, 5m", p.Channel, p.Timeout, c.Service.Code.TTL)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, mustParse(t, tt.yaml, tt.env))
		})
	}
}

func TestUnsetEnvNamesKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		env     func(string) string
		wantKey string
		wantVar string
	}{
		{"secret", configtest.MinimalYAML, configtest.EnvFrom(nil), "secret", "OTPD_HMAC_KEY"},
		{"empty counts as unset", configtest.MinimalYAML, configtest.EnvFrom(nil, "OTPD_HMAC_KEY", ""), "secret", "OTPD_HMAC_KEY"},
		{
			"provider config key",
			configtest.MinimalYAML + "    config: {apiKey: \"${MAILGUN_API_KEY}\"}\n",
			configtest.KeyEnv(), "providers[0].config.apiKey", "MAILGUN_API_KEY",
		},
		{
			"inside a list of templates",
			configtest.MinimalYAML + "    config:\n      templates:\n        - {usageType: Generic, content: \"${TPL}\"}\n",
			configtest.KeyEnv(), "providers[0].config.templates[0].content", "TPL",
		},
		{
			"second provider",
			configtest.MinimalYAML + "  - name: other\n    type: console\n    match: [\"+1\", \"${PREFIX}\"]\n",
			configtest.KeyEnv(), "providers[1].match[1]", "PREFIX",
		},
		{
			"one of two references",
			strings.Replace(configtest.MinimalYAML, `"redis://127.0.0.1:6379/0"`, `"redis://${USER}:${PASS}@h:6379"`, 1),
			configtest.KeyEnv("USER", "otpd"), "redis.url", "PASS",
		},
		{
			"auth token hash",
			configtest.MinimalYAML + "auth: {tokens: [{name: app, sha256: \"${APP_TOKEN_SHA256}\"}]}\n",
			configtest.KeyEnv(), "auth.tokens[0].sha256", "APP_TOKEN_SHA256",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), tt.env)
			wantKeyErrors(t, err, []string{tt.wantKey}, tt.wantVar+" is not set")
		})
	}
}

// TestUnsetEnvReportsEveryKey: one run names every missing variable, not
// only the first.
func TestUnsetEnvReportsEveryKey(t *testing.T) {
	t.Parallel()
	yaml := strings.Replace(configtest.MinimalYAML, `"redis://127.0.0.1:6379/0"`, `"${REDIS_URL}"`, 1) +
		"    config: {apiKey: \"${API_KEY}\", templates: [{content: \"${A}-${B}\"}], bad: \"${NOT-A-NAME}\"}\n"
	_, err := config.Parse([]byte(yaml), configtest.EnvFrom(nil))
	want := []string{"redis.url", "secret", "providers[0].config.apiKey", "providers[0].config.templates[0].content", "providers[0].config.bad"}
	wantKeyErrors(t, err, want, "REDIS_URL is not set", "OTPD_HMAC_KEY is not set", "API_KEY is not set", "A, B is not set", "is not a ${NAME} reference")
	wantAllKeyed(t, err)
	if n := len(errLines(err)); n != len(want) {
		t.Errorf("%d errors, want %d:\n%v", n, len(want), err)
	}
}

func TestMalformedEnvReference(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"${MAILGUN-KEY}", "${UNCLOSED", "${}", "pre-${1X}-post"} {
		t.Run(ref, func(t *testing.T) {
			t.Parallel()
			yaml := configtest.MinimalYAML + "    config: {apiKey: \"" + ref + "\"}\n"
			_, err := config.Parse([]byte(yaml), configtest.KeyEnv("MAILGUN", "x"))
			wantKeyErrors(t, err, []string{"providers[0].config.apiKey"}, "is not a ${NAME} reference")
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra string
		want  []string
	}{
		{"top level", "secrets: x\n", []string{"secrets"}},
		{"second level", "listen: {grpcc: \"127.0.0.1:1\"}\n", []string{"listen.grpcc"}},
		{"third level", "limits: {per_ip: {cnt: 3}}\n", []string{"limits.per_ip.cnt"}},
		{"in a provider", "    nmae: x\n", []string{"providers[0].nmae"}}, //nolint:misspell // the typo is the input: an unknown key
		{"in a later list entry", "  - {name: b, type: console, chanel: sms}\n", []string{"providers[1].chanel"}},
		{"in an auth token", "auth: {tokens: [{name: a, sha: x}]}\n", []string{"auth.tokens[0].sha"}},
		{"in each component's block", "shutdown: {dealy: 1s}\nhealth: {intervall: 1s}\nredis: {url: x, passwd: y}\n" +
			"tls: {cert: x}\ntemplates: {locale: en}\ndelivery: {retries: 3}\nlog: {format: json}\ncode: {digits: 6}\n",
			[]string{"shutdown.dealy", "health.intervall", "redis.passwd", "tls.cert", "templates.locale", "delivery.retries", "log.format", "code.digits"}},
		{"a field that is no key", "app_name: x\ndev: true\n", []string{"app_name", "dev"}},
		{"in the hooks block", "hooks: {logto: {ignore_ip: [10.0.0.0/8]}, send_timeout: 1s}\n", []string{"hooks.logto.ignore_ip", "hooks.send_timeout"}},
		{"an inlined block's field name", "server: {listen: {grpc: x}}\nservice: {secret: x}\n", []string{"server", "service"}},
		{
			"several at once",
			"secrets: x\nlisten: {grpcc: x}\nlimits: {per_ip: {cnt: 3}, per_iq: {}}\n",
			[]string{"secrets", "listen.grpcc", "limits.per_ip.cnt", "limits.per_iq"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(configtest.MinimalYAML+tt.extra), configtest.KeyEnv())
			frags := make([]string, len(tt.want))
			for i := range frags {
				frags[i] = "unknown key"
			}
			wantKeyErrors(t, err, tt.want, frags...)
			if n := len(errLines(err)); n != len(tt.want) {
				t.Errorf("%d errors, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}

func TestHooksBlock(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(configtest.MinimalYAML+"hooks: {logto: {ignore_ips: [10.0.0.0/8, 203.0.113.7]}}\n"), configtest.KeyEnv())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Server.Hooks.Logto.IgnoreIPs; len(got) != 2 || got[0] != "10.0.0.0/8" || got[1] != "203.0.113.7" {
		t.Errorf("hooks.logto.ignore_ips = %q", got)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	c.Server.Hooks.Logto.IgnoreIPs = []string{"backend"}
	wantKeyErrors(t, c.Validate(), []string{"hooks.logto.ignore_ips[0]"}, "not an IP address")
}

func TestWrongTypesNameKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantKey string
		want    string
	}{
		{"count is not a number", configtest.MinimalYAML + "limits: {per_recipient: {count: many}}\n", "limits.per_recipient.count", "many"},
		{"ttl without unit", configtest.MinimalYAML + "code: {ttl: 5}\n", "code.ttl", "not a duration"},
		{"window is a list", configtest.MinimalYAML + "limits: {per_ip: {window: [1h]}}\n", "limits.per_ip.window", "not a duration"},
		{"provider timeout without unit", configtest.MinimalYAML + "    timeout: 3\n", "providers[0].timeout", "not a duration"},
		{"shutdown delay is a word", configtest.MinimalYAML + "shutdown: {delay: soon}\n", "shutdown.delay", "not a duration"},
		{"match is not a list", configtest.MinimalYAML + "    match: x\n", "providers[0].match", ""},
		{"section is not a mapping", configtest.MinimalYAML + "listen: \"0.0.0.0:1\"\n", "listen", "mapping"},
		{"attempts is not a number", configtest.MinimalYAML + "delivery: {attempts: two}\n", "delivery.attempts", "two"},
		{"cluster is not a bool", strings.Replace(configtest.MinimalYAML, "url: ", "cluster: maybe\n  url: ", 1), "redis.cluster", "maybe"},
		{"providers is not a list", "redis: {url: x}\nsecret: x\nproviders: {name: c}\n", "providers", "list"},
		{"tokens is not a list", configtest.MinimalYAML + "auth: {tokens: {name: a}}\n", "auth.tokens", "list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), configtest.KeyEnv())
			wantKeyErrors(t, err, []string{tt.wantKey}, tt.want)
		})
	}
}

func TestMalformedFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"empty", "", "empty"},
		{"comments only", "# nothing\n", "empty"},
		{"not yaml", "listen: {grpc: [\n", "parse config"},
		{"a list at the top", "- a\n- b\n", "config: must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), configtest.KeyEnv())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/otpd.yaml"
	if err := os.WriteFile(path, []byte(configtest.MinimalYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, configtest.KeyEnv())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Redis.URL != "redis://127.0.0.1:6379/0" || c.Service.Secret.Reveal() != configtest.TestKey {
		t.Errorf("Load read redis.url %q and a secret of %d bytes", c.Redis.URL, len(c.Service.Secret))
	}
	if _, err := config.Load(dir+"/missing.yaml", configtest.KeyEnv()); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load of a missing file: err = %v, want one naming the file", err)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		// want lists the keys that must have errors; empty means valid.
		want []string
	}{
		{"valid as parsed", func(*config.Config) {}, nil},
		{"grpc host without port", func(c *config.Config) { c.Server.Listen.GRPC = "localhost" }, []string{"listen.grpc"}},
		{"grpc port out of range", func(c *config.Config) { c.Server.Listen.GRPC = "127.0.0.1:70000" }, []string{"listen.grpc"}},
		{"grpc port not a number", func(c *config.Config) { c.Server.Listen.GRPC = "127.0.0.1:grpc" }, []string{"listen.grpc"}},
		{"grpc empty", func(c *config.Config) { c.Server.Listen.GRPC = "" }, []string{"listen.grpc"}},
		{"grpc unix without path", func(c *config.Config) { c.Server.Listen.GRPC = "unix://" }, []string{"listen.grpc"}},
		{"grpc unix socket", func(c *config.Config) { c.Server.Listen.GRPC = "unix:///run/otpd/otpd.sock" }, nil},
		{"grpc ipv6", func(c *config.Config) { c.Server.Listen.GRPC = "[::1]:50051" }, nil},
		{"grpc any port", func(c *config.Config) { c.Server.Listen.GRPC = ":0" }, nil},
		{"http bad", func(c *config.Config) { c.Server.Listen.HTTP = "9464" }, []string{"listen.http"}},
		{"http unix without path", func(c *config.Config) { c.Server.Listen.HTTP = "unix://" }, []string{"listen.http"}},
		{"http off", func(c *config.Config) { c.Server.Listen.HTTP = "" }, nil},
		{"redis neither url nor addrs", func(c *config.Config) { c.Redis.URL = "" }, []string{"redis.url"}},
		{"redis url and addrs", func(c *config.Config) { c.Redis.Addrs = []string{"r:6379"} }, []string{"redis.addrs"}},
		{"redis url not a URL", func(c *config.Config) { c.Redis.URL = "r:6379" }, []string{"redis.url"}},
		{"redis url of another scheme", func(c *config.Config) { c.Redis.URL = "http://r:6379" }, []string{"redis.url"}},
		{"rediss url", func(c *config.Config) { c.Redis.URL = "rediss://user:pass@r:6380/3" }, nil},
		{"redis url with db", func(c *config.Config) { c.Redis.DB = 2 }, []string{"redis.db"}},
		{"redis url with username", func(c *config.Config) { c.Redis.Username = "otpd" }, []string{"redis.username"}},
		{"redis url with tls", func(c *config.Config) { c.Redis.TLS = true }, []string{"redis.tls"}},
		{"redis url with password", func(c *config.Config) { c.Redis.Password = "secret" }, nil},
		{"redis sentinel", func(c *config.Config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.MasterName = "", []string{"s1:26379", "s2:26379"}, "mymaster"
		}, nil},
		{"redis cluster", func(c *config.Config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.Cluster = "", []string{"r1:6379", "r2:6379"}, true
		}, nil},
		{"redis master_name and cluster", func(c *config.Config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.MasterName, c.Redis.Cluster = "", []string{"r:6379"}, "m", true
		}, []string{"redis.cluster"}},
		{"redis timeout too short", func(c *config.Config) { c.Redis.Timeout = time.Millisecond }, []string{"redis.timeout"}},
		{"redis negative pool", func(c *config.Config) { c.Redis.PoolSize = -1 }, []string{"redis.pool_size"}},
		{"secret 31 bytes", func(c *config.Config) { c.Service.Secret = c.Service.Secret[:31] }, []string{"secret"}},
		{"secret 32 bytes", func(c *config.Config) { c.Service.Secret = c.Service.Secret[:32] }, nil},
		{"secret empty", func(c *config.Config) { c.Service.Secret = "" }, []string{"secret"}},
		{"previous secrets", func(c *config.Config) {
			c.Service.PreviousSecrets = []redact.Secret{"previous-0123456789abcdef0123456789", "older-0123456789abcdef0123456789abc"}
		}, nil},
		{"previous secret 31 bytes", func(c *config.Config) {
			c.Service.PreviousSecrets = []redact.Secret{"previous-0123456789abcdef0123456789", c.Service.Secret[:31]}
		}, []string{"previous_secrets[1]"}},
		{"previous secret is the secret", func(c *config.Config) {
			c.Service.PreviousSecrets = []redact.Secret{c.Service.Secret}
		}, []string{"previous_secrets[0]"}},
		{"previous secret twice", func(c *config.Config) {
			c.Service.PreviousSecrets = []redact.Secret{"previous-0123456789abcdef0123456789", "older-0123456789abcdef0123456789abc", "previous-0123456789abcdef0123456789"}
		}, []string{"previous_secrets[2]"}},
		{"five previous secrets", func(c *config.Config) {
			for i := range 5 {
				c.Service.PreviousSecrets = append(c.Service.PreviousSecrets, redact.Secret(fmt.Sprintf("previous-%d-0123456789abcdef0123456789", i)))
			}
		}, []string{"previous_secrets"}},
		{"code length 3", func(c *config.Config) { c.Service.Code.Length = 3 }, []string{"code.length"}},
		{"code length 4", func(c *config.Config) { c.Service.Code.Length = 4 }, nil},
		{"code length 10", func(c *config.Config) { c.Service.Code.Length = 10 }, nil},
		{"code length 11", func(c *config.Config) { c.Service.Code.Length = 11 }, []string{"code.length"}},
		{"code ttl 0", func(c *config.Config) { c.Service.Code.TTL = 0 }, []string{"code.ttl"}},
		{"code max attempts 0", func(c *config.Config) { c.Service.Code.MaxAttempts = 0 }, []string{"code.max_attempts"}},
		{"negative resend interval", func(c *config.Config) { c.Service.Limits.ResendInterval = -time.Second }, []string{"limits.resend_interval"}},
		{"resend interval off", func(c *config.Config) { c.Service.Limits.ResendInterval = 0 }, nil},
		{"negative per_recipient count", func(c *config.Config) { c.Service.Limits.PerRecipient.Count = -1 }, []string{"limits.per_recipient.count"}},
		{"negative per_ip count", func(c *config.Config) { c.Service.Limits.PerIP.Count = -5 }, []string{"limits.per_ip.count"}},
		{"negative per_country count", func(c *config.Config) { c.Service.Limits.PerCountry.Count = -1 }, []string{"limits.per_country.count"}},
		{"negative verify_per_recipient count", func(c *config.Config) { c.Service.Limits.VerifyPerRecipient.Count = -1 }, []string{"limits.verify_per_recipient.count"}},
		{"zero window with a count", func(c *config.Config) { c.Service.Limits.PerIP.Window = 0 }, []string{"limits.per_ip.window"}},
		{"limit disabled", func(c *config.Config) { c.Service.Limits.PerIP = service.Window{} }, nil},
		{"send timeout 0", func(c *config.Config) { c.Service.SendTimeout = 0 }, []string{"send_timeout"}},
		{"idempotency ttl 0", func(c *config.Config) { c.Service.IdempotencyTTL = 0 }, []string{"idempotency_ttl"}},
		{"delivery attempts 0", func(c *config.Config) { c.Delivery.Attempts = 0 }, []string{"delivery.attempts"}},
		{"delivery attempts 11", func(c *config.Config) { c.Delivery.Attempts = 11 }, []string{"delivery.attempts"}},
		{"negative backoff", func(c *config.Config) { c.Delivery.Backoff = -time.Second }, []string{"delivery.backoff"}},
		{"shutdown timeout 0", func(c *config.Config) { c.Server.Shutdown.Timeout = 0 }, []string{"shutdown.timeout"}},
		{"negative shutdown delay", func(c *config.Config) { c.Server.Shutdown.Delay = -time.Second }, []string{"shutdown.delay"}},
		{"health interval too short", func(c *config.Config) { c.Server.Health.Interval = time.Millisecond }, []string{"health.interval"}},
		{"log level loud", func(c *config.Config) { c.Log.Level = "loud" }, []string{"log.level"}},
		{"log level debug", func(c *config.Config) { c.Log.Level = "debug" }, nil},
		{"tls key without cert", func(c *config.Config) { c.TLS.KeyFile = "/tls.key" }, []string{"tls.cert_file"}},
		{"tls client CA alone", func(c *config.Config) { c.TLS.ClientCAFile = "/ca.crt" }, []string{"tls.cert_file", "tls.key_file"}},
		{"auth token without a hash", func(c *config.Config) {
			c.Auth.Tokens = append(c.Auth.Tokens, authToken("app", "not-a-hash"))
		}, []string{"auth.tokens[0].sha256"}},
		{"no providers", func(c *config.Config) { c.Providers = nil }, []string{"providers"}},
		{"provider without name", func(c *config.Config) { c.Providers[0].Name = "" }, []string{"providers[0].name"}},
		{"duplicate provider names", func(c *config.Config) {
			c.Providers = append(c.Providers, registry.Spec{Name: "console", Type: "console"})
		}, []string{"providers[1].name"}},
		{"unknown provider type", func(c *config.Config) {
			c.Providers = append(c.Providers, registry.Spec{Name: "pigeon", Type: "carrier-pigeon"})
		}, []string{"providers[1].type"}},
		{"channel fax for console", func(c *config.Config) { c.Providers[0].Channel = "fax" }, []string{"providers[0].channel"}},
		{"channel sms for console", func(c *config.Config) { c.Providers[0].Channel = otp.SMS }, nil},
		{"channel email for console", func(c *config.Config) { c.Providers[0].Channel = otp.Email }, nil},
		{"channel for a one-channel type", func(c *config.Config) {
			c.Providers = append(c.Providers, registry.Spec{Name: "twilio", Type: "twilio", Channel: otp.Email})
		}, []string{"providers[1].channel"}},
		{"negative provider timeout", func(c *config.Config) { c.Providers[0].Timeout = -time.Second }, []string{"providers[0].timeout"}},
		{"sms autofill", func(c *config.Config) {
			c.Templates.WebOTPDomain, c.Templates.AndroidAppHash = "login.example.com", "FA+9qCX9VSu"
		}, nil},
		{"webotp domain a URL", func(c *config.Config) { c.Templates.WebOTPDomain = "https://example.com" },
			[]string{"templates.webotp_domain"}},
		{"android app hash too short", func(c *config.Config) { c.Templates.AndroidAppHash = "FA+9qCX9VS" },
			[]string{"templates.android_app_hash"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, configtest.MinimalYAML, configtest.KeyEnv())
			tt.mutate(c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			wantKeyErrors(t, err, tt.want)
			wantAllKeyed(t, err)
			if n := len(errLines(err)); n != len(tt.want) {
				t.Errorf("%d errors, want %d (each problem reported once):\n%v", n, len(tt.want), err)
			}
		})
	}
}

// TestFakeIsNotAReleaseType: a release build refuses "type: fake", which
// delivers nothing, so that no production file can drop codes silently.
func TestFakeIsNotAReleaseType(t *testing.T) {
	t.Parallel()
	if slices.Contains(registry.Types(), "fake") {
		t.Skip("built with -tags otpd_fake")
	}
	_, err := config.Parse([]byte(configtest.MinimalYAML+"  - {name: fake, type: fake}\n"), configtest.KeyEnv())
	wantKeyErrors(t, err, []string{"providers[1].type"}, `"fake" is not a provider type`)
	if n := len(errLines(err)); n != 1 {
		t.Errorf("%d errors, want 1:\n%v", n, err)
	}
}

// TestValidateMessages pins the wording of errors whose text says what to
// do, not only which key is wrong.
func TestValidateMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   string
	}{
		{"redis neither url nor addrs", func(c *config.Config) { c.Redis.URL = "" },
			"redis.url: set url (one node) or addrs (Sentinel, Cluster)"},
		{"redis url and addrs", func(c *config.Config) { c.Redis.Addrs = []string{"r:6379"} },
			"redis.addrs: cannot be combined with url: set one of them"},
		{"duplicate provider names", func(c *config.Config) {
			c.Providers = append(c.Providers, registry.Spec{Name: "console", Type: "console"})
		}, `providers[1].name: "console" is providers[0]'s name too`},
		{"duplicate token names", func(c *config.Config) {
			c.Auth.Tokens = []grpcauth.Token{authToken("a", hexDigest('1')), authToken("b", hexDigest('2')),
				authToken("app", hexDigest('3')), authToken("app", hexDigest('4'))}
		}, `auth.tokens[3].name: "app" is tokens[2]'s name too`},
		{"duplicate token hashes", func(c *config.Config) {
			c.Auth.Tokens = []grpcauth.Token{authToken("a", hexDigest('a')), authToken("b", strings.ToUpper(hexDigest('a')))}
		}, "auth.tokens[1].sha256: is tokens[0]'s token too"},
		{"unknown type lists the known ones", func(c *config.Config) { c.Providers[0].Type = "pigeon" },
			`providers[0].type: "pigeon" is not a provider type (` + strings.Join(registry.Types(), ", ") + ")"},
		{"secret says how to set it", func(c *config.Config) { c.Service.Secret = "short" },
			"secret: must be at least 32 bytes (set OTPD_HMAC_KEY"},
		{"webotp domain with a port", func(c *config.Config) { c.Templates.WebOTPDomain = "example.com:443" },
			`templates.webotp_domain: "example.com:443" is not a host name`},
		{"android app hash", func(c *config.Config) { c.Templates.AndroidAppHash = "not a hash" },
			`templates.android_app_hash: "not a hash" is not an SMS Retriever app hash`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, configtest.MinimalYAML, configtest.KeyEnv())
			tt.mutate(c)
			err := c.Validate()
			if err == nil || !slices.ContainsFunc(errLines(err), func(l string) bool { return strings.HasPrefix(l, tt.want) }) {
				t.Errorf("Validate = %v, want an error starting %q", err, tt.want)
			}
		})
	}
}

// TestRedisURLErrorHidesPassword: an unparseable redis.url fails at load,
// names its key, and never quotes the URL, whose password may be in it.
func TestRedisURLErrorHidesPassword(t *testing.T) {
	t.Parallel()
	const password = "Sup3r-S3cret-R3dis-P4ss"
	tests := []struct {
		name string
		url  string
		env  func(string) string
	}{
		{"literal", "redis://otpd:" + password + " x@redis.internal:port:bad/0", configtest.KeyEnv()},
		{"from the environment", "redis://user:${REDIS_PASSWORD}@host:port:bad/0", configtest.KeyEnv("REDIS_PASSWORD", password+" ss")},
		{"bad db", "redis://otpd:" + password + "@redis.internal:6379/zero", configtest.KeyEnv()},
		{"not redis", "https://otpd:" + password + "@redis.internal:6379/0", configtest.KeyEnv()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			yaml := strings.Replace(configtest.MinimalYAML, `"redis://127.0.0.1:6379/0"`, `"`+tt.url+`"`, 1)
			_, err := config.Parse([]byte(yaml), tt.env)
			wantKeyErrors(t, err, []string{"redis.url"}, "not a redis:// or rediss:// URL")
			wantAllKeyed(t, err)
			if n := len(errLines(err)); n != 1 {
				t.Errorf("%d errors, want 1:\n%v", n, err)
			}
			if err != nil && (strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "redis.internal") ||
				strings.Contains(err.Error(), "host:port")) {
				t.Errorf("error quotes the URL: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	t.Parallel()
	yaml := `
listen: {grpc: "nowhere"}
secret: "short"
code: {length: 3, ttl: 0s}
limits: {per_ip: {count: -1}}
delivery: {attempts: 0}
log: {level: loud}
providers:
  - {name: a, type: console, channel: fax}
  - {name: a, type: carrier-pigeon}
`
	_, err := config.Parse([]byte(yaml), configtest.KeyEnv())
	want := []string{
		"listen.grpc", "redis.url", "secret", "code.length", "code.ttl", "limits.per_ip.count",
		"delivery.attempts", "log.level", "providers[0].channel", "providers[1].name", "providers[1].type",
	}
	wantKeyErrors(t, err, want)
	wantAllKeyed(t, err)
	if n := len(errLines(err)); n != len(want) {
		t.Errorf("%d errors, want %d:\n%v", n, len(want), err)
	}
	if err != nil && !strings.Contains(err.Error(), "console") {
		t.Errorf("unknown type error does not list the known types: %v", err)
	}
}

func TestDevConfig(t *testing.T) {
	t.Parallel()
	c := config.Dev()
	if !c.Dev {
		t.Error("Dev().Dev is false")
	}
	if c.Redis.URL != "" || len(c.Redis.Addrs) != 0 {
		t.Fatalf("dev config has a store: %+v", c.Redis)
	}
	// The secret is random, long enough, and new each time, so that codes
	// do not outlive the process.
	if len(c.Service.Secret) < service.MinSecretLen {
		t.Errorf("dev secret is %d bytes, want at least %d", len(c.Service.Secret), service.MinSecretLen)
	}
	if c.Service.Secret == config.Dev().Service.Secret {
		t.Error("two dev configurations share a secret")
	}
	if len(c.Providers) != 1 || c.Providers[0].Type != "console" || c.Providers[0].Channel != "" {
		t.Errorf("dev providers = %+v, want one console provider on both channels", c.Providers)
	}
	// Everything but the store, the secret and listen.api (on loopback, for
	// curl and Node) is the defaults.
	want := config.Default()
	want.Dev, want.Providers, want.Service.Secret = true, c.Providers, c.Service.Secret
	want.Server.Listen.API = "127.0.0.1:8080"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("dev config:\n got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("dev config does not validate: %v", err)
	}
	// Dev mode still validates everything but the store.
	c.Service.Code.Length = 3
	c.Server.Listen.GRPC = "nowhere"
	err := c.Validate()
	wantKeyErrors(t, err, []string{"code.length", "listen.grpc"})
	if n := len(errLines(err)); n != 2 {
		t.Errorf("%d errors, want 2:\n%v", n, err)
	}
}

func TestLogLevel(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ level, want string }{{"debug", "DEBUG"}, {"info", "INFO"}, {"warn", "WARN"}, {"error", "ERROR"}} {
		c := mustParse(t, configtest.MinimalYAML+"log: {level: "+tt.level+"}\n", configtest.KeyEnv())
		if got := c.Log.SlogLevel().String(); got != tt.want {
			t.Errorf("log.level %s: SlogLevel = %s, want %s", tt.level, got, tt.want)
		}
	}
}

// TestTemplatesAutofillKeys: the SMS autofill keys decode from
// otpd.yaml's templates block, beside the other templates keys.
func TestTemplatesAutofillKeys(t *testing.T) {
	t.Parallel()
	c := mustParse(t, configtest.MinimalYAML+
		"templates: {app_name: Acme, webotp_domain: login.example.com, android_app_hash: \"FA+9qCX9VSu\"}\n", configtest.KeyEnv())
	want := templates.Options{DefaultLocale: "en", AppName: "Acme", WebOTPDomain: "login.example.com", AndroidAppHash: "FA+9qCX9VSu"}
	if c.Templates != want {
		t.Errorf("templates = %+v, want %+v", c.Templates, want)
	}
	if _, err := config.Parse([]byte(configtest.MinimalYAML+"templates: {webotp_domain: \"http://x\"}\n"), configtest.KeyEnv()); err == nil ||
		!strings.Contains(err.Error(), "templates.webotp_domain") {
		t.Errorf("Parse with a bad webotp_domain: %v, want an error naming templates.webotp_domain", err)
	}
}
