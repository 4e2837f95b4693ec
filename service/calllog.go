package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/otpd/otpd/internal/redact"
)

// callLog writes the log lines of one call, each with the attributes the
// call's lines share (the masked recipient, channel, usage type). It stands
// in for slog.Logger.With, which formats those attributes ahead into a new
// handler: more work than the one or two lines a call writes, and it showed
// in VerifyCode's profile.
//
// Its attributes are slog.Attrs, not key-value pairs, and a line goes to the
// handler as a record made here: slog.Logger.Log would box each value in an
// interface, copy the pairs into attributes one by one and walk the stack
// for the caller's PC, which otpd's handler never prints (no AddSource).
// Every call's info line comes through here, so that showed in the
// profiles too.
//
// The shared attributes are kept in the callLog itself, not in a slice of
// their own: one allocation less per call.
type callLog struct {
	log    *slog.Logger
	shared [maxShared]slog.Attr
	n      int         // shared attributes in use
	extra  []slog.Attr // any beyond maxShared
}

// maxShared is how many shared attributes a callLog keeps in itself: the
// recipient, the channel, the usage type and up to two more (a send's
// verification id and client network).
const maxShared = 5

func (c *callLog) write(ctx context.Context, level slog.Level, msg string, attrs []slog.Attr) {
	h := c.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(c.shared[:c.n]...)
	r.AddAttrs(c.extra...)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r) // as slog.Logger.Log: a handler's error is dropped
}

// InfoContext logs at info level.
func (c *callLog) InfoContext(ctx context.Context, msg string, attrs ...slog.Attr) {
	c.write(ctx, slog.LevelInfo, msg, attrs)
}

// WarnContext logs at warn level.
func (c *callLog) WarnContext(ctx context.Context, msg string, attrs ...slog.Attr) {
	c.write(ctx, slog.LevelWarn, msg, attrs)
}

// ErrorContext logs at error level.
func (c *callLog) ErrorContext(ctx context.Context, msg string, attrs ...slog.Attr) {
	c.write(ctx, slog.LevelError, msg, attrs)
}

// recipientLog is the callLog of a call about rcpt and a usage type: its
// lines carry the masked recipient, the channel and the usage type, then
// more (copied: a caller's slice may live on its stack).
func (s *Service) recipientLog(rcpt recipient, usageKey string, more ...slog.Attr) callLog {
	c := callLog{log: s.log, n: 3}
	c.shared[0] = slog.String("recipient", redact.Recipient(rcpt.addr))
	c.shared[1] = slog.String("channel", string(rcpt.channel))
	c.shared[2] = slog.String("usage_type", usageKey)
	k := copy(c.shared[c.n:], more)
	c.n += k
	if k < len(more) {
		c.extra = append([]slog.Attr(nil), more[k:]...)
	}
	return c
}
