package server

import (
	"context"
	"time"

	"google.golang.org/grpc/stats"

	"github.com/otpd/otpd/otp"
)

// callState is what otpd knows about one call, shared by the interceptors
// and callStats through the call's context. It is that context itself:
// the call's context with the callState as the value of callStateKey, in
// one allocation where context.WithValue would add a second.
type callState struct {
	context.Context
	method    string
	reached   bool   // the unary interceptors ran
	malformed string // why refuseMalformed refused the request, if it did
}

// Value is the callState for callStateKey, else the parent's value.
func (cs *callState) Value(key any) any {
	if _, ok := key.(callStateKey); ok {
		return cs
	}
	return cs.Context.Value(key)
}

type callStateKey struct{}

func callStateFrom(ctx context.Context) *callState {
	cs, _ := ctx.Value(callStateKey{}).(*callState)
	return cs
}

// markReached is the first step of the unary interceptors: a call that
// gets here is counted and logged by the interceptors, one that does not
// is callStats'. It returns the context the service gets.
func markReached(ctx context.Context) context.Context {
	if cs := callStateFrom(ctx); cs != nil {
		cs.reached = true
	}
	// The service labels its metrics with the entry point too; without
	// one in ctx, it reads "grpc".
	if entry := entryOf(ctx); otp.Entry(ctx) != entry {
		ctx = otp.WithEntry(ctx, entry)
	}
	return ctx
}

// callStats sees every call end, including the unary calls that grpc-go
// answers itself before any interceptor runs: a request over
// maxTransportBytes, one whose compression otpd does not support, a
// second request message on a unary call. It reports those through
// report, so that they are counted and logged like any call.
type callStats struct {
	unary  map[string]bool // full method names of the unary methods served; set before serving
	report func(ctx context.Context, method string, err error, elapsed time.Duration)
}

var _ stats.Handler = (*callStats)(nil)

func (s *callStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return &callState{Context: ctx, method: info.FullMethodName}
}

func (s *callStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	end, ok := rs.(*stats.End)
	if !ok || end.Error == nil {
		return
	}
	cs := callStateFrom(ctx)
	// Only methods otpd serves: an unknown method never ends here, but the
	// method name is the caller's, and it labels metrics.
	if cs == nil || cs.reached || !s.unary[cs.method] {
		return
	}
	s.report(ctx, cs.method, end.Error, end.EndTime.Sub(end.BeginTime))
}

func (s *callStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (s *callStats) HandleConn(context.Context, stats.ConnStats) {}
