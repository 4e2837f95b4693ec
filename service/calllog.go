package service

import (
	"context"
	"log/slog"
)

// callLog writes the log lines of one call, each with the attributes the
// call's lines share (the masked recipient, channel, usage type). It stands
// in for slog.Logger.With, which formats those attributes ahead into a new
// handler: more work than the one or two lines a call writes, and it showed
// in VerifyCode's profile.
type callLog struct {
	log    *slog.Logger
	shared []any // key-value pairs
}

func (s *Service) callLog(shared ...any) callLog { return callLog{s.log, shared} }

// with returns a callLog whose lines also carry args.
func (c callLog) with(args ...any) callLog {
	return callLog{c.log, append(c.shared[:len(c.shared):len(c.shared)], args...)}
}

func (c callLog) write(ctx context.Context, level slog.Level, msg string, args []any) {
	if !c.log.Enabled(ctx, level) {
		return
	}
	c.log.Log(ctx, level, msg, append(c.shared[:len(c.shared):len(c.shared)], args...)...)
}

// InfoContext logs at info level.
func (c callLog) InfoContext(ctx context.Context, msg string, args ...any) {
	c.write(ctx, slog.LevelInfo, msg, args)
}

// WarnContext logs at warn level.
func (c callLog) WarnContext(ctx context.Context, msg string, args ...any) {
	c.write(ctx, slog.LevelWarn, msg, args)
}

// ErrorContext logs at error level.
func (c callLog) ErrorContext(ctx context.Context, msg string, args ...any) {
	c.write(ctx, slog.LevelError, msg, args)
}
