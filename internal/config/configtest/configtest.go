// Package configtest holds the otpd.yaml fixtures that the tests of
// several packages share: the smallest valid file, DESIGN.md's example and
// the environments they need.
package configtest

// TestKey is an HMAC key long enough for validation.
const TestKey = "k3y-0123456789abcdef0123456789abcdef"

// MinimalYAML is the smallest production configuration: everything else
// takes its default.
const MinimalYAML = `
redis:
  url: "redis://127.0.0.1:6379/0"
secret: "${OTPD_HMAC_KEY}"
providers:
  - name: console
    type: console
`

// DesignExampleYAML is the example of DESIGN.md, verbatim.
const DesignExampleYAML = `
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

// DesignEnv is the environment the DESIGN.md example needs.
var DesignEnv = map[string]string{
	"OTPD_HMAC_KEY":      TestKey,
	"TENCENT_SECRET_ID":  "AKIDtencent",
	"TENCENT_SECRET_KEY": "tencent-secret-value",
	"TWILIO_ACCOUNT_SID": "AC0123456789abcdef",
	"TWILIO_AUTH_TOKEN":  "twiliotokenvalue0123456789abcdef",
	"MAILGUN_API_KEY":    "key-mailgun-value",
	"ALIYUN_AK":          "LTAIaliyun",
	"ALIYUN_SK":          "aliyun-secret-value",
}

// EnvFrom returns a getenv that reads m and then kv (name, value pairs).
func EnvFrom(m map[string]string, kv ...string) func(string) string {
	all := map[string]string{}
	for k, v := range m {
		all[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		all[kv[i]] = kv[i+1]
	}
	return func(name string) string { return all[name] }
}

// KeyEnv is the environment of MinimalYAML.
func KeyEnv(kv ...string) func(string) string {
	return EnvFrom(map[string]string{"OTPD_HMAC_KEY": TestKey}, kv...)
}
