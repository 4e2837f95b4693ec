package console

import (
	"github.com/otpd/otpd/providers"
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
func ParseConfig(raw []byte) (Config, error) { return providers.ParseConfig[Config]("console", raw) }

// Validate reports whether cfg is usable. Every Config is.
func (Config) Validate() error { return nil }
