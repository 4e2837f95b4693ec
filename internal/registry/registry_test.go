package registry

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otpd/otpd/internal/errtest"
	"github.com/otpd/otpd/otp"
)

// specOf decodes one providers entry of otpd.yaml.
func specOf(tb testing.TB, entry string) Spec {
	tb.Helper()
	var s Spec
	if err := yaml.Unmarshal([]byte(entry), &s); err != nil {
		tb.Fatalf("bad providers entry in test: %v\n%s", err, entry)
	}
	return s
}

// jsonOf decodes a JSON literal.
func jsonOf(tb testing.TB, s string) any {
	tb.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		tb.Fatalf("bad JSON literal in test: %v\n%s", err, s)
	}
	return v
}

// decodedJSON returns the configuration of s as its provider will see it.
func decodedJSON(tb testing.TB, s Spec) any {
	tb.Helper()
	raw, err := s.configJSON()
	if err != nil {
		tb.Fatalf("configJSON: %v", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatalf("configJSON is not JSON: %v\n%s", err, raw)
	}
	return v
}

// TestProviderConfigToJSON: a provider's config block, written as YAML or
// pasted as Logto's connector JSON, reaches the provider as the JSON it
// means.
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
			name:   "null",
			config: " null",
			want:   `{}`,
		},
		{
			name:   "empty",
			config: " {}",
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
			name:   "a big number keeps its digits",
			config: ` {id: 12345678901234567890, tiny: 1e-7}`,
			want:   `{"id": 12345678901234567890, "tiny": 1e-7}`,
		},
		{
			name:   "YAML-only number and bool forms become their value",
			config: ` {hex: 0x1F, octal: 0o17, upper: TRUE, off: False}`,
			want:   `{"hex": 31, "octal": 15, "upper": true, "off": false}`,
		},
		{
			name:   "a date-like string keeps its text",
			config: ` {subject: Launch on 2025-01-01, variables: {launch: 2025-01-01}}`,
			want:   `{"subject": "Launch on 2025-01-01", "variables": {"launch": "2025-01-01"}}`,
		},
		{
			name:   "yes and no stay strings",
			config: ` {a: yes, b: no, c: on}`,
			want:   `{"a": "yes", "b": "no", "c": "on"}`,
		},
		{
			name:   "anchors and aliases",
			config: ` {html: &body "<p>{{code}}</p>", deliveries: {SignIn: {html: *body}, Generic: {html: *body}}}`,
			want:   `{"html": "<p>{{code}}</p>", "deliveries": {"SignIn": {"html": "<p>{{code}}</p>"}, "Generic": {"html": "<p>{{code}}</p>"}}}`,
		},
		{
			name:   "tilde is null",
			config: ` {endpoint: ~}`,
			want:   `{"endpoint": null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			entry := "name: p\ntype: console\n"
			if tt.config != "" {
				entry += "config:" + tt.config + "\n"
			}
			s := specOf(t, entry)
			if err := s.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if got, want := decodedJSON(t, s), jsonOf(t, tt.want); !reflect.DeepEqual(got, want) {
				raw, _ := s.configJSON()
				t.Errorf("config as JSON:\n got %s\nwant %s", raw, tt.want)
			}
		})
	}
}

// TestConfigJSONKeepsNumbersExact: numbers pass through as written, not
// through a float64.
func TestConfigJSONKeepsNumbersExact(t *testing.T) {
	t.Parallel()
	raw, err := specOf(t, "name: p\ntype: console\nconfig: {id: 12345678901234567890}\n").configJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("12345678901234567890")) {
		t.Errorf("configJSON = %s, want the number's digits unchanged", raw)
	}
}

// TestConfigJSONKeepsExpandedStrings: config (package internal/config) tags
// a value expanded from ${ENV} as a string, whatever it looks like; the JSON
// keeps it one.
func TestConfigJSONKeepsExpandedStrings(t *testing.T) {
	t.Parallel()
	s := specOf(t, "name: p\ntype: console\nconfig: {sdkAppId: 1400000000, on: true, templates: [{templateCode: 0123}]}\n")
	for _, n := range []*yaml.Node{s.Config.Content[1], s.Config.Content[3], s.Config.Content[5].Content[0].Content[1]} {
		n.Tag = "!!str"
	}
	want := jsonOf(t, `{"sdkAppId": "1400000000", "on": "true", "templates": [{"templateCode": "0123"}]}`)
	if got := decodedJSON(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("config as JSON = %v, want %v", got, want)
	}
}

func TestConfigJSONErrorsNameConfig(t *testing.T) {
	t.Parallel()
	s := specOf(t, "name: p\ntype: console\nconfig: {ratio: .inf}\n")
	if _, err := s.configJSON(); err == nil {
		t.Fatal("configJSON of an infinity succeeded")
	}
	err := s.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("Validate = %v, want an error naming config", err)
	}
}

func TestTypes(t *testing.T) {
	t.Parallel()
	got := Types()
	if !slices.IsSorted(got) {
		t.Errorf("Types() = %q, not sorted", got)
	}
	for _, want := range []string{"aliyun-dm", "console", "http", "mailgun", "tencent", "twilio"} {
		if !slices.Contains(got, want) {
			t.Errorf("Types() = %q, lacks %s", got, want)
		}
	}
	// fake, which delivers nothing, exists only in binaries built with
	// -tags otpd_fake.
	_, tagged := testTypes()["fake"]
	if slices.Contains(got, "fake") != tagged {
		t.Errorf("Types() = %q; fake must be there only with -tags otpd_fake (tagged: %v)", got, tagged)
	}
	if !tagged && len(got) != 6 {
		t.Errorf("Types() = %q, want the six release types", got)
	}
}

func TestSpecValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec Spec
		want []string // error prefixes, in order; none means valid
	}{
		{"console", Spec{Name: "c", Type: "console"}, nil},
		{"console on sms", Spec{Name: "c", Type: "console", Channel: otp.SMS}, nil},
		{"console on email", Spec{Name: "c", Type: "console", Channel: otp.Email}, nil},
		{"twilio with a timeout", Spec{Name: "t", Type: "twilio", Timeout: 3 * time.Second, Match: []string{"+1"}}, nil},
		{"no name", Spec{Type: "console"}, []string{"name: must be set"}},
		{"no type", Spec{Name: "x"}, []string{`type: "" is not a provider type (`}},
		{"unknown type", Spec{Name: "x", Type: "pigeon"}, []string{`type: "pigeon" is not a provider type (aliyun-dm, console, `}},
		{"bad channel", Spec{Name: "c", Type: "console", Channel: "fax"}, []string{"channel: must be sms or email"}},
		{"channel for a one-channel type", Spec{Name: "m", Type: "mailgun", Channel: otp.Email},
			[]string{"channel: type mailgun always sends email; leave channel out"}},
		{"http on sms", Spec{Name: "h", Type: "http", Channel: otp.SMS}, nil},
		{"http on email", Spec{Name: "h", Type: "http", Channel: otp.Email}, nil},
		{"http without a channel", Spec{Name: "h", Type: "http"},
			[]string{"channel: required for type http: sms or email, the Logto connector the endpoint was written for"}},
		{"http on a bad channel", Spec{Name: "h", Type: "http", Channel: "fax"}, []string{"channel: must be sms or email"}},
		{"negative timeout", Spec{Name: "c", Type: "console", Timeout: -time.Second}, []string{"timeout: must not be negative"}},
		{"everything wrong", Spec{Type: "pigeon", Channel: "fax", Timeout: -1},
			[]string{"name: ", "type: ", "timeout: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errtest.WantPrefixes(t, tt.spec.Validate(), tt.want)
		})
	}
}

func TestSpecChannels(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		spec Spec
		want []otp.Channel
	}{
		{Spec{Type: "console"}, []otp.Channel{otp.SMS, otp.Email}},
		{Spec{Type: "console", Channel: otp.SMS}, []otp.Channel{otp.SMS}},
		{Spec{Type: "console", Channel: otp.Email}, []otp.Channel{otp.Email}},
		{Spec{Type: "twilio"}, []otp.Channel{otp.SMS}},
		{Spec{Type: "tencent"}, []otp.Channel{otp.SMS}},
		{Spec{Type: "mailgun"}, []otp.Channel{otp.Email}},
		{Spec{Type: "aliyun-dm"}, []otp.Channel{otp.Email}},
		{Spec{Type: "http", Channel: otp.SMS}, []otp.Channel{otp.SMS}},
		{Spec{Type: "http", Channel: otp.Email}, []otp.Channel{otp.Email}},
	} {
		if got := tt.spec.Channels(); !slices.Equal(got, tt.want) {
			t.Errorf("%s/%q: Channels() = %q, want %q", tt.spec.Type, tt.spec.Channel, got, tt.want)
		}
	}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	specs := []Spec{
		specOf(t, "name: console\ntype: console\n"),
		specOf(t, "name: console-cn\ntype: console\nchannel: sms\nmatch: [\"+86\"]\ntimeout: 2s\nconfig: {}\n"),
		specOf(t, `name: twilio
type: twilio
config: {accountSID: AC00000000000000000000000000000000, authToken: "0123456789abcdef", fromMessagingServiceSID: MG00000000000000000000000000000000}
`),
		specOf(t, "name: hook-mail\ntype: http\nchannel: email\nconfig: {endpoint: \"https://hooks.example.com/email\", authorization: \"Bearer x\"}\n"),
	}
	var out bytes.Buffer
	routes, err := Build(specs, Env{Console: &out})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	type route struct {
		name    string
		channel otp.Channel
		match   []string
		timeout time.Duration
	}
	want := []route{
		{"console", otp.SMS, nil, 0},
		{"console", otp.Email, nil, 0},
		{"console-cn", otp.SMS, []string{"+86"}, 2 * time.Second},
		{"twilio", otp.SMS, nil, 0},
		{"hook-mail", otp.Email, nil, 0},
	}
	var got []route
	for _, r := range routes {
		if r.Sender == nil {
			t.Errorf("route %s/%s has no sender", r.Name, r.Channel)
		}
		got = append(got, route{r.Name, r.Channel, r.Match, r.Timeout})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routes:\n got %+v\nwant %+v", got, want)
	}
	if routes[0].Sender != routes[1].Sender {
		t.Error("a console provider on both channels is two providers, want one serving both")
	}
}

func TestBuildErrorsNameProviders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		entry string
		want  []string
	}{
		{"unknown type", "name: pigeon\ntype: carrier-pigeon\n", []string{`providers[1] (pigeon): unknown type "carrier-pigeon"`}},
		{"fake in a release build", "name: fake\ntype: fake\n", []string{`providers[1] (fake): unknown type "fake"`}},
		{"unknown console config key", "name: loud\ntype: console\nconfig: {colour: red}\n", []string{"providers[1] (loud): ", "colour"}},
		{"vendor config missing a required key", "name: flaky\ntype: twilio\nconfig: {accountSID: AC00000000000000000000000000000000, authToken: abc123}\n",
			[]string{"providers[1] (flaky): ", "fromMessagingServiceSID: required"}},
		{"http without a channel", "name: hook\ntype: http\nconfig: {endpoint: \"https://hooks.example.com/sms\"}\n",
			[]string{"providers[1] (hook): channel: required for type http"}},
		{"http without an endpoint", "name: hook\ntype: http\nchannel: sms\nconfig: {authorization: \"Bearer x\"}\n",
			[]string{"providers[1] (hook): ", "endpoint: required"}},
		{"config not JSON-able", "name: inf\ntype: console\nconfig: {ratio: .inf}\n", []string{"providers[1] (inf): config: "}},
		{"tencent without a template for every usage type", `name: tencent-cn
type: tencent
config: {accessKeyId: AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE, accessKeySecret: s3cr3t, signName: Acme, region: ap-guangzhou,
         sdkAppId: "1400000000", templates: [{usageType: SignIn, templateCode: "1234567"}]}
`, []string{"providers[1] (tencent-cn): cannot serve Register", "cannot serve ForgotPassword", "cannot serve Generic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.name == "fake in a release build" && testTypes() != nil {
				t.Skip("built with -tags otpd_fake")
			}
			routes, err := Build([]Spec{{Name: "console", Type: "console"}, specOf(t, tt.entry)}, Env{})
			if err == nil {
				t.Fatalf("Build succeeded with %d routes, want an error", len(routes))
			}
			if routes != nil {
				t.Errorf("Build returned %d routes with its error, want none", len(routes))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "providers[0]") {
				t.Errorf("error blames the good provider: %v", err)
			}
		})
	}
}
