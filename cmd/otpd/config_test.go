package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/testpki"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/service"
)

// testKey is an HMAC key long enough for validation.
const testKey = "k3y-0123456789abcdef0123456789abcdef"

// minimalYAML is the smallest production configuration: everything else
// takes its default.
const minimalYAML = `
redis:
  url: "redis://127.0.0.1:6379/0"
secret: "${OTPD_HMAC_KEY}"
providers:
  - name: console
    type: console
`

// designExampleYAML is the example of DESIGN.md, verbatim.
const designExampleYAML = `
listen:
  grpc: "0.0.0.0:50051"          # or "unix:///run/otpd/otpd.sock"
  http: "0.0.0.0:9464"           # /metrics /healthz /readyz
redis:
  url: "redis://127.0.0.1:6379/0" # or addrs: [...], master_name: ..., cluster: true
secret: "${OTPD_HMAC_KEY}"       # HMAC key, at least 32 bytes
code: {length: 6, ttl: 10m, max_attempts: 5}
limits:
  resend_interval: 60s
  per_recipient: {count: 5, window: 10m}
  per_ip: {count: 20, window: 1h}
  per_country: {count: 1000, window: 1h}
  verify_per_recipient: {count: 20, window: 1h}
templates: {dir: "", default_locale: en, app_name: "Acme"}
providers:
  - name: tencent-cn
    type: tencent
    match: ["+86"]
    config: {accessKeyId: "${TENCENT_SECRET_ID}", accessKeySecret: "${TENCENT_SECRET_KEY}",
             signName: "Acme", region: "ap-guangzhou", sdkAppId: "1400000000",
             templates: [{usageType: Generic, templateCode: "1234567"}]}
  - name: twilio
    type: twilio
    config: {accountSID: "${TWILIO_ACCOUNT_SID}", authToken: "${TWILIO_AUTH_TOKEN}",
             fromMessagingServiceSID: "MG0000", templates: [{usageType: Generic, content: "Your code is {{code}}"}]}
  - name: mailgun
    type: mailgun
    config: {domain: "mg.example.com", apiKey: "${MAILGUN_API_KEY}", from: "Acme <no-reply@mg.example.com>",
             deliveries: {Generic: {subject: "Your code", html: "<p>{{code}}</p>", text: "{{code}}"}}}
  - name: aliyun
    type: aliyun-dm
    config: {accessKeyId: "${ALIYUN_AK}", accessKeySecret: "${ALIYUN_SK}", accountName: "no-reply@dm.example.com",
             templates: [{usageType: Generic, subject: "Your code", content: "<p>{{code}}</p>"}]}
`

// designEnv is the environment the DESIGN.md example needs.
var designEnv = map[string]string{
	"OTPD_HMAC_KEY":      testKey,
	"TENCENT_SECRET_ID":  "AKIDtencent",
	"TENCENT_SECRET_KEY": "tencent-secret-value",
	"TWILIO_ACCOUNT_SID": "AC0123456789abcdef",
	"TWILIO_AUTH_TOKEN":  "twiliotokenvalue0123456789abcdef",
	"MAILGUN_API_KEY":    "key-mailgun-value",
	"ALIYUN_AK":          "LTAIaliyun",
	"ALIYUN_SK":          "aliyun-secret-value",
}

// envFrom returns a getenv that reads m and then kv (name, value pairs).
func envFrom(m map[string]string, kv ...string) func(string) string {
	all := map[string]string{}
	for k, v := range m {
		all[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		all[kv[i]] = kv[i+1]
	}
	return func(name string) string { return all[name] }
}

// keyEnv is the environment of minimalYAML.
func keyEnv(kv ...string) func(string) string {
	return envFrom(map[string]string{"OTPD_HMAC_KEY": testKey}, kv...)
}

// errLines returns the messages of every error joined in err.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, errLines(e)...)
		}
		return out
	}
	return []string{err.Error()}
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
var keyedError = regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[A-Za-z_]+(\[\d+\])?)*: `)

// wantAllKeyed fails unless every error joined in err starts with a key.
func wantAllKeyed(tb testing.TB, err error) {
	tb.Helper()
	for _, l := range errLines(err) {
		if !keyedError.MatchString(l) {
			tb.Errorf("error does not start with the key it is about: %q", l)
		}
	}
}

// rawJSON decodes a provider's config block as the provider will see it.
func rawJSON(tb testing.TB, c *config, i int) any {
	tb.Helper()
	if i >= len(c.Providers) {
		tb.Fatalf("config has %d providers, want at least %d", len(c.Providers), i+1)
	}
	var v any
	if err := json.Unmarshal(c.Providers[i].raw, &v); err != nil {
		tb.Fatalf("providers[%d] raw config is not JSON: %v\n%s", i, err, c.Providers[i].raw)
	}
	return v
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

func TestDefaultsWhenKeysAreAbsent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
	}{
		{"minimal", minimalYAML},
		{"empty sections", minimalYAML + "code: {}\nlimits: {}\ntemplates: {}\ndelivery: {}\nlog: {}\nlisten: {}\n"},
		{"empty window", minimalYAML + "limits: {per_ip: {}}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig([]byte(tt.yaml), keyEnv())
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			want := service.DefaultConfig()
			want.Secret = []byte(testKey)
			if got := c.serviceConfig(); !reflect.DeepEqual(got, want) {
				t.Errorf("service config:\n got %+v\nwant %+v", got, want)
			}
			// Everything else is defaultConfig with the three keys given.
			wantC := defaultConfig()
			wantC.Redis.URL = "redis://127.0.0.1:6379/0"
			wantC.Secret = testKey
			c.Providers, wantC.Providers = nil, nil
			if !reflect.DeepEqual(c, wantC) {
				t.Errorf("config:\n got %+v\nwant %+v", c, wantC)
			}
			if c.Code.Length != 6 || c.Code.TTL.std() != 10*time.Minute || c.Limits.ResendInterval.std() != time.Minute {
				t.Errorf("documented defaults changed: code %+v, resend %v", c.Code, c.Limits.ResendInterval.std())
			}
		})
	}
}

func TestPartialOverrideKeepsOtherDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]byte(minimalYAML+"limits:\n  per_ip: {count: 50}\ncode: {length: 8}\n"), keyEnv())
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	def := service.DefaultConfig()
	got := c.serviceConfig()
	if got.PerIP != (service.Window{Count: 50, Window: def.PerIP.Window}) {
		t.Errorf("per_ip = %+v, want count 50 with the default window %v", got.PerIP, def.PerIP.Window)
	}
	if got.CodeLength != 8 || got.CodeTTL != def.CodeTTL || got.MaxAttempts != def.MaxAttempts {
		t.Errorf("code = %d/%v/%d, want 8 with default ttl and attempts", got.CodeLength, got.CodeTTL, got.MaxAttempts)
	}
}

func TestDesignExample(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]byte(designExampleYAML), envFrom(designEnv))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}

	if c.Listen.GRPC != "0.0.0.0:50051" || c.Listen.HTTP != "0.0.0.0:9464" {
		t.Errorf("listen = %+v", c.Listen)
	}
	if got := c.Secret.Reveal(); got != testKey {
		t.Errorf("secret = %q, want the value of OTPD_HMAC_KEY", got)
	}
	want := service.DefaultConfig()
	want.Secret = []byte(testKey)
	want.AppName = "Acme"
	if got := c.serviceConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("service config:\n got %+v\nwant %+v", got, want)
	}
	if c.Templates.DefaultLocale != "en" {
		t.Errorf("templates.default_locale = %q", c.Templates.DefaultLocale)
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
		if p.Name != wp.name || p.Type != wp.typ || !slices.Equal(p.Match, wp.match) {
			t.Errorf("providers[%d] = %s/%s/%q, want %s/%s/%q", i, p.Name, p.Type, p.Match, wp.name, wp.typ, wp.match)
		}
		if got, want := rawJSON(t, c, i), jsonOf(t, wp.config); !reflect.DeepEqual(got, want) {
			t.Errorf("providers[%d].config as JSON:\n got %s\nwant %s", i, p.raw, wp.config)
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
		check func(tb testing.TB, c *config)
	}{
		{
			name: "secret of only digits stays a string",
			yaml: "redis: {url: x}\nsecret: \"${KEY}\"\nproviders: [{name: c, type: console}]\n",
			env:  envFrom(nil, "KEY", digits),
			check: func(tb testing.TB, c *config) {
				if got := c.Secret.Reveal(); got != digits {
					tb.Errorf("secret = %q, want %q", got, digits)
				}
			},
		},
		{
			name: "unquoted secret of only digits stays a string",
			yaml: "redis: {url: x}\nsecret: ${KEY}\nproviders: [{name: c, type: console}]\n",
			env:  envFrom(nil, "KEY", digits),
			check: func(tb testing.TB, c *config) {
				if got := c.Secret.Reveal(); got != digits {
					tb.Errorf("secret = %q, want %q", got, digits)
				}
			},
		},
		{
			name: "digits in a provider config stay a JSON string",
			yaml: minimalYAML[:strings.LastIndex(minimalYAML, "    type: console")] +
				"    type: tencent\n    config:\n      sdkAppId: ${APP_ID}\n      quoted: \"${APP_ID}\"\n      templates: [{usageType: Generic, templateCode: \"${TPL}\"}]\n",
			env: keyEnv("APP_ID", "1400000000", "TPL", "0123"),
			check: func(tb testing.TB, c *config) {
				want := jsonOf(tb, `{"sdkAppId": "1400000000", "quoted": "1400000000", "templates": [{"usageType": "Generic", "templateCode": "0123"}]}`)
				if got := rawJSON(tb, c, 0); !reflect.DeepEqual(got, want) {
					tb.Errorf("config = %s, want %v", c.Providers[0].raw, want)
				}
			},
		},
		{
			name: "double dollar is a dollar",
			yaml: "redis: {url: x}\nsecret: \"pa$$word-0123456789abcdef0123456789\"\nproviders: [{name: c, type: console}]\n",
			env:  envFrom(nil),
			check: func(tb testing.TB, c *config) {
				if got, want := c.Secret.Reveal(), "pa$word-0123456789abcdef0123456789"; got != want {
					tb.Errorf("secret = %q, want %q", got, want)
				}
			},
		},
		{
			name: "escaped reference stays literal",
			yaml: "redis: {url: x}\nsecret: \"$${NOT_A_VAR}-0123456789abcdef0123456789\"\nproviders: [{name: c, type: console}]\n",
			env:  envFrom(nil, "NOT_A_VAR", "expanded"),
			check: func(tb testing.TB, c *config) {
				if got, want := c.Secret.Reveal(), "${NOT_A_VAR}-0123456789abcdef0123456789"; got != want {
					tb.Errorf("secret = %q, want %q", got, want)
				}
			},
		},
		{
			name: "a lone dollar is kept",
			yaml: "redis: {url: x}\nsecret: \"cost$5-0123456789abcdef0123456789abc\"\nproviders: [{name: c, type: console}]\n",
			env:  envFrom(nil),
			check: func(tb testing.TB, c *config) {
				if got, want := c.Secret.Reveal(), "cost$5-0123456789abcdef0123456789abc"; got != want {
					tb.Errorf("secret = %q, want %q", got, want)
				}
			},
		},
		{
			name: "text around a reference",
			yaml: strings.Replace(minimalYAML, `"redis://127.0.0.1:6379/0"`, `"redis://:${REDIS_PASSWORD}@redis.internal:6379/${REDIS_DB}"`, 1),
			env:  keyEnv("REDIS_PASSWORD", "p@ss", "REDIS_DB", "2"),
			check: func(tb testing.TB, c *config) {
				if got, want := c.Redis.URL, "redis://:p@ss@redis.internal:6379/2"; got != want {
					tb.Errorf("redis.url = %q, want %q", got, want)
				}
			},
		},
		{
			name: "references in lists",
			yaml: minimalYAML + "    match: [\"${CC}\", \"+1${AREA}\"]\n",
			env:  keyEnv("CC", "+86", "AREA", "415"),
			check: func(tb testing.TB, c *config) {
				if got, want := c.Providers[0].Match, []string{"+86", "+1415"}; !slices.Equal(got, want) {
					tb.Errorf("match = %q, want %q", got, want)
				}
			},
		},
		{
			name: "comments and keys are not expanded",
			yaml: minimalYAML + "# ${NOT_SET_ANYWHERE}\n",
			env:  keyEnv(),
			check: func(tb testing.TB, c *config) {
				if c.Secret.Reveal() != testKey {
					tb.Errorf("secret = %q", c.Secret.Reveal())
				}
			},
		},
		{
			// A numeric setting from the environment, as Kubernetes
			// manifests commonly do (pool_size: ${REDIS_POOL_SIZE}).
			name: "number from the environment fills a number key",
			yaml: minimalYAML + "code:\n  length: ${CODE_LENGTH}\n",
			env:  keyEnv("CODE_LENGTH", "8"),
			check: func(tb testing.TB, c *config) {
				if c.Code.Length != 8 {
					tb.Errorf("code.length = %d, want 8", c.Code.Length)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig([]byte(tt.yaml), tt.env)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			tt.check(t, c)
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
		{"secret", minimalYAML, envFrom(nil), "secret", "OTPD_HMAC_KEY"},
		{"empty counts as unset", minimalYAML, envFrom(nil, "OTPD_HMAC_KEY", ""), "secret", "OTPD_HMAC_KEY"},
		{
			"provider config key",
			minimalYAML + "    config: {apiKey: \"${MAILGUN_API_KEY}\"}\n",
			keyEnv(), "providers[0].config.apiKey", "MAILGUN_API_KEY",
		},
		{
			"inside a list of templates",
			minimalYAML + "    config:\n      templates:\n        - {usageType: Generic, content: \"${TPL}\"}\n",
			keyEnv(), "providers[0].config.templates[0].content", "TPL",
		},
		{
			"second provider",
			minimalYAML + "  - name: other\n    type: console\n    match: [\"+1\", \"${PREFIX}\"]\n",
			keyEnv(), "providers[1].match[1]", "PREFIX",
		},
		{
			"one of two references",
			strings.Replace(minimalYAML, `"redis://127.0.0.1:6379/0"`, `"redis://${USER}:${PASS}@h:6379"`, 1),
			keyEnv("USER", "otpd"), "redis.url", "PASS",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig([]byte(tt.yaml), tt.env)
			wantKeyErrors(t, err, []string{tt.wantKey}, tt.wantVar+" is not set")
		})
	}
}

func TestMalformedEnvReference(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"${MAILGUN-KEY}", "${UNCLOSED", "${}", "pre-${1X}-post"} {
		t.Run(ref, func(t *testing.T) {
			t.Parallel()
			yaml := minimalYAML + "    config: {apiKey: \"" + ref + "\"}\n"
			_, err := parseConfig([]byte(yaml), keyEnv("MAILGUN", "x"))
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
		{"in a provider", "    nmae: x\n", []string{"providers[0].nmae"}},
		{"in a later list entry", "  - {name: b, type: console, chanel: sms}\n", []string{"providers[1].chanel"}},
		{
			"several at once",
			"secrets: x\nlisten: {grpcc: x}\nlimits: {per_ip: {cnt: 3}, per_iq: {}}\n",
			[]string{"secrets", "listen.grpcc", "limits.per_ip.cnt", "limits.per_iq"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig([]byte(minimalYAML+tt.extra), keyEnv())
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

func TestWrongTypesNameKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantKey string
		want    string
	}{
		{"count is not a number", minimalYAML + "limits: {per_recipient: {count: many}}\n", "limits.per_recipient.count", "many"},
		{"ttl without unit", minimalYAML + "code: {ttl: 5}\n", "code.ttl", "not a duration"},
		{"window is a list", minimalYAML + "limits: {per_ip: {window: [1h]}}\n", "limits.per_ip.window", "not a duration"},
		{"match is not a list", minimalYAML + "    match: x\n", "providers[0].match", ""},
		{"section is not a mapping", minimalYAML + "listen: \"0.0.0.0:1\"\n", "listen", "mapping"},
		{"attempts is not a number", minimalYAML + "delivery: {attempts: two}\n", "delivery.attempts", "two"},
		{"cluster is not a bool", strings.Replace(minimalYAML, "url: ", "cluster: maybe\n  url: ", 1), "redis.cluster", "maybe"},
		{"providers is not a list", "redis: {url: x}\nsecret: x\nproviders: {name: c}\n", "providers", "list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig([]byte(tt.yaml), keyEnv())
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
			_, err := parseConfig([]byte(tt.yaml), keyEnv())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateNamesKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *config)
		// want lists the keys that must have errors; empty means valid.
		want []string
	}{
		{"valid as parsed", func(*config) {}, nil},
		{"grpc host without port", func(c *config) { c.Listen.GRPC = "localhost" }, []string{"listen.grpc"}},
		{"grpc port out of range", func(c *config) { c.Listen.GRPC = "127.0.0.1:70000" }, []string{"listen.grpc"}},
		{"grpc port not a number", func(c *config) { c.Listen.GRPC = "127.0.0.1:grpc" }, []string{"listen.grpc"}},
		{"grpc empty", func(c *config) { c.Listen.GRPC = "" }, []string{"listen.grpc"}},
		{"grpc unix without path", func(c *config) { c.Listen.GRPC = "unix://" }, []string{"listen.grpc"}},
		{"grpc unix socket", func(c *config) { c.Listen.GRPC = "unix:///run/otpd/otpd.sock" }, nil},
		{"grpc ipv6", func(c *config) { c.Listen.GRPC = "[::1]:50051" }, nil},
		{"grpc any port", func(c *config) { c.Listen.GRPC = ":0" }, nil},
		{"http bad", func(c *config) { c.Listen.HTTP = "9464" }, []string{"listen.http"}},
		{"http unix without path", func(c *config) { c.Listen.HTTP = "unix://" }, []string{"listen.http"}},
		{"http off", func(c *config) { c.Listen.HTTP = "" }, nil},
		{"redis neither url nor addrs", func(c *config) { c.Redis.URL = "" }, []string{"redis"}},
		{"redis url and addrs", func(c *config) { c.Redis.Addrs = []string{"r:6379"} }, []string{"redis"}},
		{"redis sentinel", func(c *config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.MasterName = "", []string{"s1:26379", "s2:26379"}, "mymaster"
		}, nil},
		{"redis cluster", func(c *config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.Cluster = "", []string{"r1:6379", "r2:6379"}, true
		}, nil},
		{"redis master_name and cluster", func(c *config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.MasterName, c.Redis.Cluster = "", []string{"r:6379"}, "m", true
		}, []string{"redis.cluster"}},
		{"redis timeout too short", func(c *config) { c.Redis.Timeout = duration(time.Millisecond) }, []string{"redis.timeout"}},
		{"redis negative pool", func(c *config) { c.Redis.PoolSize = -1 }, []string{"redis.pool_size"}},
		{"secret 31 bytes", func(c *config) { c.Secret = c.Secret[:31] }, []string{"secret"}},
		{"secret 32 bytes", func(c *config) { c.Secret = c.Secret[:32] }, nil},
		{"secret empty", func(c *config) { c.Secret = "" }, []string{"secret"}},
		{"code length 3", func(c *config) { c.Code.Length = 3 }, []string{"code.length"}},
		{"code length 4", func(c *config) { c.Code.Length = 4 }, nil},
		{"code length 10", func(c *config) { c.Code.Length = 10 }, nil},
		{"code length 11", func(c *config) { c.Code.Length = 11 }, []string{"code.length"}},
		{"code ttl 0", func(c *config) { c.Code.TTL = 0 }, []string{"code.ttl"}},
		{"code max attempts 0", func(c *config) { c.Code.MaxAttempts = 0 }, []string{"code.max_attempts"}},
		{"negative resend interval", func(c *config) { c.Limits.ResendInterval = duration(-time.Second) }, []string{"limits.resend_interval"}},
		{"resend interval off", func(c *config) { c.Limits.ResendInterval = 0 }, nil},
		{"negative per_recipient count", func(c *config) { c.Limits.PerRecipient.Count = -1 }, []string{"limits.per_recipient.count"}},
		{"negative per_ip count", func(c *config) { c.Limits.PerIP.Count = -5 }, []string{"limits.per_ip.count"}},
		{"negative per_country count", func(c *config) { c.Limits.PerCountry.Count = -1 }, []string{"limits.per_country.count"}},
		{"negative verify_per_recipient count", func(c *config) { c.Limits.VerifyPerRecipient.Count = -1 }, []string{"limits.verify_per_recipient.count"}},
		{"zero window with a count", func(c *config) { c.Limits.PerIP.Window = 0 }, []string{"limits.per_ip.window"}},
		{"limit disabled", func(c *config) { c.Limits.PerIP = windowConfig{} }, nil},
		{"send timeout 0", func(c *config) { c.SendTimeout = 0 }, []string{"send_timeout"}},
		{"idempotency ttl 0", func(c *config) { c.IdempotencyTTL = 0 }, []string{"idempotency_ttl"}},
		{"delivery attempts 0", func(c *config) { c.Delivery.Attempts = 0 }, []string{"delivery.attempts"}},
		{"delivery attempts 11", func(c *config) { c.Delivery.Attempts = 11 }, []string{"delivery.attempts"}},
		{"negative backoff", func(c *config) { c.Delivery.Backoff = duration(-time.Second) }, []string{"delivery.backoff"}},
		{"shutdown timeout 0", func(c *config) { c.Shutdown.Timeout = 0 }, []string{"shutdown.timeout"}},
		{"negative shutdown delay", func(c *config) { c.Shutdown.Delay = duration(-time.Second) }, []string{"shutdown.delay"}},
		{"health interval too short", func(c *config) { c.Health.Interval = duration(time.Millisecond) }, []string{"health.interval"}},
		{"log level loud", func(c *config) { c.Log.Level = "loud" }, []string{"log.level"}},
		{"log level debug", func(c *config) { c.Log.Level = "debug" }, nil},
		{"no providers", func(c *config) { c.Providers = nil }, []string{"providers"}},
		{"provider without name", func(c *config) { c.Providers[0].Name = "" }, []string{"providers[0].name"}},
		{"duplicate provider names", func(c *config) {
			c.Providers = append(c.Providers, providerConfig{Name: "console", Type: "console"})
		}, []string{"providers[1].name"}},
		{"unknown provider type", func(c *config) {
			c.Providers = append(c.Providers, providerConfig{Name: "pigeon", Type: "carrier-pigeon"})
		}, []string{"providers[1].type"}},
		{"channel fax for console", func(c *config) { c.Providers[0].Channel = "fax" }, []string{"providers[0].channel"}},
		{"channel sms for console", func(c *config) { c.Providers[0].Channel = "sms" }, nil},
		{"channel email for console", func(c *config) { c.Providers[0].Channel = "email" }, nil},
		{"negative provider timeout", func(c *config) { c.Providers[0].Timeout = duration(-time.Second) }, []string{"providers[0].timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig([]byte(minimalYAML), keyEnv())
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			tt.mutate(c)
			err = c.validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("validate: %v", err)
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
	_, err := parseConfig([]byte(yaml), keyEnv())
	want := []string{
		"listen.grpc", "redis", "secret", "code.length", "code.ttl", "limits.per_ip.count",
		"delivery.attempts", "log.level", "providers[0].channel", "providers[1].name", "providers[1].type",
	}
	wantKeyErrors(t, err, want)
	wantAllKeyed(t, err)
	if n := len(errLines(err)); n != len(want) {
		t.Errorf("%d errors, want %d:\n%v", n, len(want), err)
	}
	if !strings.Contains(err.Error(), "console") {
		t.Errorf("unknown type error does not list the known types: %v", err)
	}
}

func TestProviderConfigToJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		config string // YAML after "config:"
		want   string // JSON
	}{
		{
			name:   "absent",
			config: "",
			want:   `{}`,
		},
		{
			name:   "Logto twilio JSON pasted verbatim",
			config: ` {"accountSID": "AC123", "authToken": "tok", "fromMessagingServiceSID": "MG1", "disableRiskCheck": true, "templates": [{"usageType": "SignIn", "content": "Your code is {{code}}, valid for 10 minutes. 你好"}, {"usageType": "Register", "content": "Welcome! {{code}}"}, {"usageType": "OrganizationInvitation", "content": "Invite {{code}}"}]}`,
			want:   `{"accountSID": "AC123", "authToken": "tok", "fromMessagingServiceSID": "MG1", "disableRiskCheck": true, "templates": [{"usageType": "SignIn", "content": "Your code is {{code}}, valid for 10 minutes. 你好"}, {"usageType": "Register", "content": "Welcome! {{code}}"}, {"usageType": "OrganizationInvitation", "content": "Invite {{code}}"}]}`,
		},
		{
			name: "Logto mailgun JSON with nested deliveries",
			config: ` {"endpoint": "https://api.eu.mailgun.net", "domain": "mg.example.com", "apiKey": "key-1", "from": "Acme <a@mg.example.com>",
			  "deliveries": {"SignIn": {"subject": "Sign in", "replyTo": "help@example.com", "html": "<b>{{code}}</b>", "text": "{{code}}"},
			                 "Generic": {"subject": "Code", "template": "otp", "variables": {"n": 3, "ratio": 0.5, "tags": ["a", "b"], "none": null, "quote": "\"q\" \\ \u00e9"}}}}`,
			want: `{"endpoint": "https://api.eu.mailgun.net", "domain": "mg.example.com", "apiKey": "key-1", "from": "Acme <a@mg.example.com>",
			  "deliveries": {"SignIn": {"subject": "Sign in", "replyTo": "help@example.com", "html": "<b>{{code}}</b>", "text": "{{code}}"},
			                 "Generic": {"subject": "Code", "template": "otp", "variables": {"n": 3, "ratio": 0.5, "tags": ["a", "b"], "none": null, "quote": "\"q\" \\ é"}}}}`,
		},
		{
			name: "block style with a multi-line template",
			config: `
      accessKeyId: AK
      templates:
        - usageType: SignIn
          subject: Your code
          content: |
            <p>Your code is {{code}}.</p>
            <p>It expires soon.</p>
        - usageType: Generic
          subject: Code
          content: "<p>{{code}}</p>"`,
			want: `{"accessKeyId": "AK", "templates": [{"usageType": "SignIn", "subject": "Your code", "content": "<p>Your code is {{code}}.</p>\n<p>It expires soon.</p>\n"}, {"usageType": "Generic", "subject": "Code", "content": "<p>{{code}}</p>"}]}`,
		},
		{
			name:   "quoted digits stay strings, unquoted numbers and bools stay typed",
			config: ` {sdkAppId: "1400000000", templateCode: "0123", port: 8443, ratio: 1.5, on: true}`,
			want:   `{"sdkAppId": "1400000000", "templateCode": "0123", "port": 8443, "ratio": 1.5, "on": true}`,
		},
		{
			name:   "a date-like string keeps its text",
			config: ` {subject: Launch on 2025-01-01, variables: {launch: 2025-01-01}}`,
			want:   `{"subject": "Launch on 2025-01-01", "variables": {"launch": "2025-01-01"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			yaml := minimalYAML
			if tt.config != "" {
				yaml += "    config:" + tt.config + "\n"
			}
			c, err := parseConfig([]byte(yaml), keyEnv())
			if c == nil {
				t.Fatalf("parseConfig: %v", err)
			}
			// What a console provider makes of a Logto block is not the
			// point here; anything else must be fine.
			for _, l := range errLines(err) {
				if !strings.HasPrefix(l, "providers[0]") {
					t.Errorf("unexpected error: %s", l)
				}
			}
			if got, want := rawJSON(t, c, 0), jsonOf(t, tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("config as JSON:\n got %s\nwant %s", c.Providers[0].raw, tt.want)
			}
		})
	}
}

func TestDevConfig(t *testing.T) {
	t.Parallel()
	c := devConfig()
	if c.Secret != "" || c.Redis.URL != "" || len(c.Redis.Addrs) != 0 {
		t.Fatalf("dev config has a secret or a store: %+v", c.Redis)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("dev config does not validate: %v", err)
	}
	var out bytes.Buffer
	if err := checkConfig(c, &out); err != nil {
		t.Fatalf("checkConfig(dev): %v\n%s", err, out.String())
	}
	for _, want := range []string{"dev", "provider console (sms", "provider console (email"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	// Dev mode still validates everything but the store and the secret.
	c.Code.Length = 3
	wantKeyErrors(t, c.validate(), []string{"code.length"})
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	const (
		secret   = "super-secret-hmac-key-0123456789abcdef"
		password = "redis-password-value-42"
	)
	yaml := `
redis:
  url: "redis://127.0.0.1:6379/0"
  password: "${REDIS_PASSWORD}"
secret: "${OTPD_HMAC_KEY}"
templates: {app_name: "Acme"}
providers:
  - name: console
    type: console
  - name: fake-cn
    type: fake
    channel: sms
    match: ["+86"]
    config: {mode: ok}
`
	c, err := parseConfig([]byte(yaml), envFrom(nil, "OTPD_HMAC_KEY", secret, "REDIS_PASSWORD", password))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	var out bytes.Buffer
	if err := checkConfig(c, &out); err != nil {
		t.Fatalf("checkConfig: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, bad := range []string{secret, password} {
		if strings.Contains(s, bad) {
			t.Errorf("check output contains a secret %q:\n%s", bad, s)
		}
	}
	sections := strings.Split(s, "\nprovider ")[1:]
	wantSections := []string{"console (sms", "console (email", "fake-cn (sms, +86)"}
	if len(sections) != len(wantSections) {
		t.Fatalf("%d provider sections, want %d:\n%s", len(sections), len(wantSections), s)
	}
	for i, sec := range sections {
		if !strings.HasPrefix(sec, wantSections[i]) {
			t.Errorf("section %d starts %q, want %q", i, firstLine(sec), wantSections[i])
		}
		for _, u := range otp.UsageTypes {
			line := lineWith(sec, "  "+string(u)+":")
			if line == "" {
				t.Errorf("section %q does not render %s:\n%s", firstLine(sec), u, sec)
				continue
			}
			if !strings.Contains(line, "123456") {
				t.Errorf("%s %s preview lacks the sample code: %q", firstLine(sec), u, line)
			}
		}
	}
}

func TestCheckConfigFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra string
		want  []string
	}{
		{"bad provider config", "  - name: flaky\n    type: fake\n    config: {mode: sometimes}\n", []string{"providers[1]", "flaky", "mode"}},
		{"unknown provider config key", "  - name: loud\n    type: console\n    config: {colour: red}\n", []string{"providers[1]", "loud", "colour"}},
		{"missing template dir", "templates: {dir: /nonexistent/otpd-templates}\n", []string{"templates"}},
		{"tencent without a template for every usage type", `  - name: tencent-cn
    type: tencent
    config: {accessKeyId: AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE, accessKeySecret: s3cr3t, signName: Acme, region: ap-guangzhou,
             sdkAppId: "1400000000", templates: [{usageType: SignIn, templateCode: "1234567"}]}
`, []string{"providers[1] (tencent-cn): cannot serve Register", "cannot serve ForgotPassword", "cannot serve Generic"}},
		{"twilio with a phone number for a messaging service", `  - name: twilio
    type: twilio
    config: {accountSID: AC00000000000000000000000000000000, authToken: "0123456789abcdef", fromMessagingServiceSID: "+14155550100"}
`, []string{"providers[1] (twilio)", "fromMessagingServiceSID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig([]byte(minimalYAML+tt.extra), keyEnv())
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			err = checkConfig(c, &bytes.Buffer{})
			if err == nil {
				t.Fatal("checkConfig succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// logtoPasteYAML holds the four vendor connectors' Logto configurations
// as a Logto console shows them, pasted as JSON, templates for all nine of
// Logto's usage types included.
const logtoPasteYAML = `
redis: {url: "redis://127.0.0.1:6379/0"}
secret: "${OTPD_HMAC_KEY}"
providers:
  - name: twilio
    type: twilio
    config: {
      "accountSID": "AC0123456789abcdef0123456789abcdef",
      "authToken": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
      "fromMessagingServiceSID": "MG0123456789abcdef0123456789abcdef",
      "templates": [
        {"usageType": "Register", "content": "Welcome! Your registration code is {{code}}."},
        {"usageType": "SignIn", "content": "Your sign-in code is {{code}}."},
        {"usageType": "ForgotPassword", "content": "Your password reset code is {{code}}."},
        {"usageType": "Generic", "content": "Your verification code is {{code}}."},
        {"usageType": "OrganizationInvitation", "content": "Join us: {{link}}"},
        {"usageType": "UserPermissionValidation", "content": "Code {{code}}"},
        {"usageType": "BindNewIdentifier", "content": "Code {{code}}"},
        {"usageType": "MfaVerification", "content": "Code {{code}}"},
        {"usageType": "BindMfa", "content": "Code {{code}}"}
      ]
    }
  - name: tencent
    type: tencent
    config: {
      "accessKeyId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
      "accessKeySecret": "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY",
      "signName": "Logto",
      "region": "ap-guangzhou",
      "sdkAppId": "1400006666",
      "templates": [
        {"usageType": "Register", "templateCode": "1234561"},
        {"usageType": "SignIn", "templateCode": "1234562"},
        {"usageType": "ForgotPassword", "templateCode": "1234563"},
        {"usageType": "Generic", "templateCode": "1234564"},
        {"usageType": "MfaVerification", "templateCode": "1234565"}
      ]
    }
  - name: mailgun
    type: mailgun
    config: {
      "endpoint": "https://api.mailgun.net",
      "domain": "mg.example.com",
      "apiKey": "key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
      "from": "Logto <noreply@mg.example.com>",
      "deliveries": {
        "Register": {
          "subject": "{{code}} est votre code de vérification",
          "replyTo": "Foo <foo@bar.com>",
          "html": "<h1>Bienvenue sur Logto</h1><p>Votre code de vérification est {{code}}.</p>",
          "text": "Bienvenue sur Logto. Votre code de vérification est {{code}}."
        },
        "SignIn": {
          "subject": "Bon retour sur Logto",
          "replyTo": "Foo <foo@bar.com>",
          "template": "logto-sign-in",
          "variables": {"bar": "baz"}
        },
        "OrganizationInvitation": {"subject": "Invitation", "html": "<a href=\"{{link}}\">Join</a>"}
      }
    }
  - name: aliyun
    type: aliyun-dm
    config: {
      "accessKeyId": "LTAI5tExampleAccessKeyId",
      "accessKeySecret": "ExampleAccessKeySecret0123456789",
      "accountName": "noreply@dm.example.com",
      "fromAlias": "Logto",
      "templates": [
        {"usageType": "Register", "subject": "Bienvenue", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "SignIn", "subject": "Connexion", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "ForgotPassword", "subject": "Mot de passe", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "Generic", "subject": "Code", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "BindMfa", "subject": "MFA", "content": "<p>{{code}}</p>"}
      ]
    }
`

// TestCheckVendorConfigs runs otpd -check's work on Logto configurations
// pasted unchanged and on DESIGN.md's example: every provider × usage type
// renders with the sample code, settings print, and no secret does.
func TestCheckVendorConfigs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		env        func(string) string
		secrets    []string
		sections   []string
	}{
		{
			name: "Logto paste", yaml: logtoPasteYAML, env: keyEnv(),
			secrets: []string{testKey, "f0e1d2c3b4a5968778695a4b3c2d1e0f", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY",
				"AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
				"LTAI5tExampleAccessKeyId", "ExampleAccessKeySecret0123456789"},
			sections: []string{"twilio (sms", "tencent (sms", "mailgun (email", "aliyun (email"},
		},
		{
			name: "DESIGN.md example", yaml: designExampleYAML, env: envFrom(designEnv),
			secrets:  []string{testKey, "tencent-secret-value", "twiliotokenvalue0123456789abcdef", "key-mailgun-value", "aliyun-secret-value", "AKIDtencent", "LTAIaliyun"},
			sections: []string{"tencent-cn (sms, +86)", "twilio (sms", "mailgun (email", "aliyun (email"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig([]byte(tc.yaml), tc.env)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			var out bytes.Buffer
			if err := checkConfig(c, &out); err != nil {
				t.Fatalf("checkConfig: %v\n%s", err, out.String())
			}
			s := out.String()
			for _, secret := range tc.secrets {
				if strings.Contains(s, secret) {
					t.Errorf("check output holds the secret %q:\n%s", secret, s)
				}
			}
			sections := strings.Split(s, "\nprovider ")[1:]
			if len(sections) != len(tc.sections) {
				t.Fatalf("%d provider sections, want %d:\n%s", len(sections), len(tc.sections), s)
			}
			for i, sec := range sections {
				if !strings.HasPrefix(sec, tc.sections[i]) {
					t.Errorf("section %d starts %q, want %q", i, firstLine(sec), tc.sections[i])
				}
				if lineWith(sec, "  settings: ") == "" {
					t.Errorf("section %q prints no settings:\n%s", firstLine(sec), sec)
				}
				for _, u := range otp.UsageTypes {
					if line := lineWith(sec, "  "+string(u)+":"); !strings.Contains(line, "123456") {
						t.Errorf("%s %s: preview %q lacks the sample code", firstLine(sec), u, line)
					}
				}
			}
		})
	}
}

// shippedEnv gives every ${VAR} of the shipped configurations a
// placeholder of the right shape.
func shippedEnv(name string) string {
	switch name {
	case "OTPD_HMAC_KEY":
		return testKey
	case "REDIS_URL":
		return "redis://redis:6379/0"
	case "TWILIO_ACCOUNT_SID":
		return "AC00000000000000000000000000000000"
	case "TWILIO_AUTH_TOKEN":
		return "00000000000000000000000000000000"
	case "TWILIO_MESSAGING_SERVICE_SID":
		return "MG00000000000000000000000000000000"
	case "OTPD_TOKEN_AUTH_SERVER_SHA256":
		return sha256Hex("placeholder-token")
	}
	return "placeholder-" + name
}

// TestShippedConfigsCheck runs otpd -check's work on every configuration
// the repository ships: deploy/otpd.example.yaml and the otpd.yaml of each
// Kubernetes layout (their TLS files are replaced by generated ones).
func TestShippedConfigsCheck(t *testing.T) {
	t.Parallel()
	paths := []string{filepath.Join("..", "..", "deploy", "otpd.example.yaml")}
	k8s, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "*", "otpd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	overlays, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "overlays", "*", "otpd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(append(paths, k8s...), overlays...)
	if len(paths) < 4 {
		t.Fatalf("found %d shipped configurations, want the example and three Kubernetes layouts: %v", len(paths), paths)
	}
	dir := t.TempDir()
	authority := testpki.NewCA(t, "test CA")
	certPEM, keyPEM := authority.Issue(t, "otpd", x509.ExtKeyUsageServerAuth)
	certFile, keyFile := testpki.WriteFile(t, dir, "tls.crt", certPEM), testpki.WriteFile(t, dir, "tls.key", keyPEM)
	caFile := testpki.WriteFile(t, dir, "ca.crt", authority.PEM)
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(path, shippedEnv)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if c.TLS.enabled() {
				c.TLS = tlsConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: map[bool]string{true: caFile}[c.TLS.ClientCAFile != ""]}
			}
			var out bytes.Buffer
			if err := checkConfig(c, &out); err != nil {
				t.Errorf("otpd -check %s: %v\n%s", path, err, out.String())
			}
		})
	}
	path := paths[0]
	_, err = loadConfig(path, func(name string) string {
		if name == "OTPD_HMAC_KEY" {
			return ""
		}
		return shippedEnv(name)
	})
	if err == nil || !strings.Contains(err.Error(), "OTPD_HMAC_KEY") {
		t.Errorf("%s without OTPD_HMAC_KEY: err = %v, want one naming OTPD_HMAC_KEY", path, err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func lineWith(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
