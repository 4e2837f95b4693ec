package validate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// OtpdConfig is the part of otpd's effective configuration (otpd
// -print-config) that the manifests must agree with, or the errors otpd
// reports for the file.
type OtpdConfig struct {
	Listen struct {
		GRPC string `json:"grpc"`
		HTTP string `json:"http"` // "" turns the admin HTTP off
	} `json:"listen"`
	Shutdown struct {
		Delay   Duration `json:"delay"`
		Timeout Duration `json:"timeout"`
	} `json:"shutdown"`
	TLS struct {
		CertFile     string `json:"cert_file"`
		KeyFile      string `json:"key_file"`
		ClientCAFile string `json:"client_ca_file"`
	} `json:"tls"`

	// Errors are otpd's "key: message" list when it rejects the file.
	Errors []string `json:"errors"`
	// MissingEnv lists the ${NAME} references whose variable the
	// environment lacks (or holds empty), with the key that holds each.
	MissingEnv []struct {
		Key  string `json:"key"`
		Name string `json:"name"`
	} `json:"missing_env"`
}

// Duration is a Go duration string ("20s") as otpd prints it.
type Duration time.Duration

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// An OtpdFunc returns what `otpd -config FILE ARGS... -print-config` prints
// when FILE holds configText and env is otpd's whole environment: the
// effective configuration, or otpd's errors in OtpdConfig.Errors. Its error is
// for otpd failing to run or printing something else.
type OtpdFunc func(configText string, args []string, env map[string]string) (*OtpdConfig, error)

// ExecOtpd runs the otpd binary at bin, built from this repository.
func ExecOtpd(bin string) OtpdFunc {
	return func(configText string, args []string, env map[string]string) (*OtpdConfig, error) {
		dir, err := os.MkdirTemp("", "otpd-validate-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		file := filepath.Join(dir, "otpd.yaml")
		if err := os.WriteFile(file, []byte(configText), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, append(append([]string{"-config", file}, args...), "-print-config")...)
		cmd.Env = []string{} // exactly the container's variables, none of ours
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr := cmd.Run()
		var exit *exec.ExitError
		if runErr != nil && (!errors.As(runErr, &exit) || exit.ExitCode() != 2) {
			return nil, fmt.Errorf("%s -print-config: %w: %s", bin, runErr, strings.TrimSpace(stderr.String()))
		}
		cfg := new(OtpdConfig)
		if err := json.Unmarshal(stdout.Bytes(), cfg); err != nil {
			return nil, fmt.Errorf("%s -print-config printed no configuration (%w): %s", bin, err, strings.TrimSpace(stderr.String()))
		}
		if runErr != nil && len(cfg.Errors) == 0 {
			return nil, fmt.Errorf("%s -print-config: %w: %s", bin, runErr, strings.TrimSpace(stderr.String()))
		}
		return cfg, nil
	}
}

// standIn is the value given to an environment variable that a Secret
// provides: committed Secrets hold placeholders only, so each gets a value of
// the shape otpd requires for the shipped variables (secret.example.yaml).
func standIn(name string) string {
	switch {
	case name == "REDIS_URL":
		return "redis://redis:6379/0"
	case name == "TWILIO_ACCOUNT_SID":
		return "AC0123456789abcdef0123456789abcdef"
	case name == "TWILIO_AUTH_TOKEN":
		return "0123456789abcdef0123456789abcdef"
	case strings.HasSuffix(name, "_SHA256"): // a caller token's hex SHA-256
		sum := sha256.Sum256([]byte(name))
		return hex.EncodeToString(sum[:])
	}
	// Long enough for a key (OTPD_HMAC_KEY needs 32 bytes).
	return "stand-in-for-" + name + "-0123456789abcdef0123456789abcdef"
}

// unixPath returns the socket path of a unix:// address.
func unixPath(addr string) (string, bool) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok && p != "" {
		return path.Clean(p), true
	}
	return "", false
}
