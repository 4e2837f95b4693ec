package validate

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"time"

	"sigs.k8s.io/yaml"
)

// OtpdConfig is the part of otpd.yaml the manifests must agree with. otpd
// itself validates the whole file (otpd -check).
type OtpdConfig struct {
	Listen struct {
		GRPC string `json:"grpc"`
		HTTP string `json:"http"`
	} `json:"listen"`
	Shutdown struct {
		Delay   string `json:"delay"`
		Timeout string `json:"timeout"`
	} `json:"shutdown"`
	TLS *struct {
		CertFile     string `json:"cert_file"`
		KeyFile      string `json:"key_file"`
		ClientCAFile string `json:"client_ca_file"`
	} `json:"tls"`

	// Text is the file as mounted.
	Text string `json:"-"`
	// Tree is the whole file, for comparisons.
	Tree map[string]any `json:"-"`
}

// Defaults of otpd (README.md, "Keys").
const (
	defaultGRPC            = "127.0.0.1:50051"
	defaultHTTP            = "127.0.0.1:9464"
	defaultShutdownDelay   = 0
	defaultShutdownTimeout = 20 * time.Second
)

// ParseOtpdConfig reads otpd.yaml text.
func ParseOtpdConfig(text string) (*OtpdConfig, error) {
	c := new(OtpdConfig)
	if err := yaml.Unmarshal([]byte(text), c); err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal([]byte(text), &c.Tree); err != nil {
		return nil, err
	}
	c.Text = text
	if c.Listen.GRPC == "" {
		c.Listen.GRPC = defaultGRPC
	}
	if l, _ := c.Tree["listen"].(map[string]any); l["http"] == nil {
		c.Listen.HTTP = defaultHTTP // absent; "" turns the admin HTTP off
	}
	return c, nil
}

// ShutdownBudget is shutdown.delay + shutdown.timeout.
func (c *OtpdConfig) ShutdownBudget() (time.Duration, error) {
	delay, timeout := time.Duration(defaultShutdownDelay), defaultShutdownTimeout
	var err error
	if c.Shutdown.Delay != "" {
		if delay, err = time.ParseDuration(c.Shutdown.Delay); err != nil {
			return 0, fmt.Errorf("shutdown.delay: %w", err)
		}
	}
	if c.Shutdown.Timeout != "" {
		if timeout, err = time.ParseDuration(c.Shutdown.Timeout); err != nil {
			return 0, fmt.Errorf("shutdown.timeout: %w", err)
		}
	}
	return delay + timeout, nil
}

// envRef is ${NAME} not preceded by another $ ($$ is a literal $).
var envRef = regexp.MustCompile(`(^|[^$])\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// EnvVars lists the ${NAME} references in the values of otpd.yaml (not in
// its comments), sorted.
func (c *OtpdConfig) EnvVars() []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			for _, m := range envRef.FindAllStringSubmatch(v, -1) {
				seen[m[2]] = true
			}
		}
	}
	walk(c.Tree)
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// unixPath returns the socket path of a unix:// address.
func unixPath(addr string) (string, bool) {
	const scheme = "unix://"
	if len(addr) > len(scheme) && addr[:len(scheme)] == scheme {
		return path.Clean(addr[len(scheme):]), true
	}
	return "", false
}
