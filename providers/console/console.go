// Package console is otpd's development provider: instead of sending a
// message it writes it, code included, to a writer such as the terminal, so
// that a developer can copy the code. It serves both channels and never
// fails except when its context has ended or its writer does.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
)

var (
	_ providers.Sender = (*Provider)(nil)
	_ providers.Texter = (*Provider)(nil)
)

// Provider writes each message to a writer as a delimited, human-readable
// block. It is safe for concurrent use; blocks never interleave.
type Provider struct {
	name string
	cfg  Config

	mu sync.Mutex // serialises writes to w and guards n
	w  io.Writer
	n  uint64
}

// New returns a console provider called name that writes to w, or to
// standard error if w is nil.
func New(name string, cfg Config, w io.Writer) (*Provider, error) {
	if name == "" {
		return nil, errors.New("create console provider: name is empty")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("create console provider %q: %w", name, err)
	}
	if w == nil {
		w = os.Stderr
	}
	return &Provider{name: name, cfg: cfg, w: w}, nil
}

// Send writes msg to the provider's writer: a header naming the channel, the
// masked recipient, the usage type, locale and verification ID, then the
// code, the subject and the text, and the size of the HTML part, then a
// footer. The code is printed on purpose: this provider is for development.
func (p *Provider) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	id := "console-" + strconv.FormatUint(p.n, 10)
	if _, err := io.WriteString(p.w, render(msg, id)); err != nil {
		return otp.Receipt{}, providers.Transient(p.name, "write", fmt.Errorf("write message: %w", err))
	}
	return otp.Receipt{Provider: p.name, MessageID: id}, nil
}

// Text returns the text Send prints for an SMS: otpd's, autofill lines
// included.
func (p *Provider) Text(msg otp.Message) (text, template string, err error) {
	return msg.Content.Text, "", nil
}

func render(msg otp.Message, id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "===== otpd console: %s to %s (%s, %s, id %s) =====\n",
		msg.Channel, redact.Recipient(msg.To), msg.UsageType, orNone(msg.Locale), orNone(msg.VerificationID))
	fmt.Fprintf(&b, "code: %s\n", msg.Code)
	if msg.Content.Subject != "" {
		fmt.Fprintf(&b, "subject: %s\n", msg.Content.Subject)
	}
	if msg.Content.Text != "" {
		b.WriteString("text:\n")
		for line := range strings.Lines(msg.Content.Text) {
			b.WriteString("  ")
			b.WriteString(strings.TrimRight(line, "\r\n"))
			b.WriteByte('\n')
		}
	}
	if msg.Content.HTML != "" {
		fmt.Fprintf(&b, "html: %d bytes, not shown\n", len(msg.Content.HTML))
	}
	fmt.Fprintf(&b, "===== end of %s =====\n", id)
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
