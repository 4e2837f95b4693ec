package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Config configures the console provider. It has no settings of its own;
// it exists so that a provider block of type console decodes like any other
// and so that a misspelt key is reported rather than ignored.
type Config struct {
	// Endpoint is accepted, as every provider takes one, and unused: the
	// console provider does no I/O.
	Endpoint string `json:"endpoint"`
}

// ParseConfig decodes the JSON config block of a console provider. Unknown
// keys are an error; an empty block or null gives the zero Config.
func ParseConfig(raw []byte) (Config, error) {
	var cfg Config
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return cfg, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("decode console config: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("decode console config: unexpected data after the object")
	}
	return cfg, cfg.Validate()
}

// Validate reports whether cfg is usable. Every Config is.
func (Config) Validate() error { return nil }
