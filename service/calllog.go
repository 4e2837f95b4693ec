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
type callLog struct {
	log    *slog.Logger
	shared []slog.Attr
}

func (c callLog) write(ctx context.Context, level slog.Level, msg string, attrs []slog.Attr) {
	h := c.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(c.shared...)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r) // as slog.Logger.Log: a handler's error is dropped
}

// InfoContext logs at info level.
func (c callLog) InfoContext(ctx context.Context, msg string, attrs ...slog.Attr) {
	c.write(ctx, slog.LevelInfo, msg, attrs)
}

// WarnContext logs at warn level.
func (c callLog) WarnContext(ctx context.Context, msg string, attrs ...slog.Attr) {
	c.write(ctx, slog.LevelWarn, msg, attrs)
}

// ErrorContext logs at error level.
func (c callLog) ErrorContext(ctx context.Context, msg string, attrs ...slog.Attr) {
	c.write(ctx, slog.LevelError, msg, attrs)
}

// recipientLog is the callLog of a call about rcpt and a usage type: its
// lines carry the masked recipient, the channel and the usage type, then
// more (copied: a caller's slice may live on its stack).
func (s *Service) recipientLog(rcpt recipient, usageKey string, more ...slog.Attr) callLog {
	shared := make([]slog.Attr, 0, 3+len(more))
	shared = append(shared, slog.String("recipient", redact.Recipient(rcpt.addr)),
		slog.String("channel", string(rcpt.channel)), slog.String("usage_type", usageKey))
	return callLog{s.log, append(shared, more...)}
}
