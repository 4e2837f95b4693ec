package server

import (
	"context"
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// grpcMetrics are go-grpc-middleware's standard gRPC server metrics
// (providers/prometheus ServerMetrics with WithServerHandlingTimeHistogram):
// the same families, help texts, labels, buckets and counting, so that
// dashboards and alerts read them unchanged (TestGRPCMetricsMatchLibrary
// holds the two side by side). What differs is the cost per call: the
// library builds a reporter and looks up five label sets by hashing their
// values on every call; here each method's series are looked up once, when
// the server's methods are known (initialize), and a call finds them in a
// map that no longer changes.
type grpcMetrics struct {
	started     *prometheus.CounterVec
	handled     *prometheus.CounterVec
	msgReceived *prometheus.CounterVec
	msgSent     *prometheus.CounterVec
	handling    *prometheus.HistogramVec

	// methods are the series of each method served, by full method name
	// ("/otp.v1.OtpService/SendCode"); written by initialize before the
	// server serves, read-only after.
	methods map[string]*methodMetrics
}

// methodMetrics are the series of one method. Those of a method the
// server does not serve are nil: looked up on each use, so that only the
// series the library would make appear.
type methodMetrics struct {
	started, msgReceived, msgSent prometheus.Counter
	handling                      prometheus.Observer
	handled                       [numCodes]prometheus.Counter // by code

	m                    *grpcMetrics
	typ, service, method string
}

func (mm *methodMetrics) startedCounter() prometheus.Counter {
	return orLookUp(mm.started, mm.m.started, mm)
}

func (mm *methodMetrics) receivedCounter() prometheus.Counter {
	return orLookUp(mm.msgReceived, mm.m.msgReceived, mm)
}

func (mm *methodMetrics) sentCounter() prometheus.Counter {
	return orLookUp(mm.msgSent, mm.m.msgSent, mm)
}

func (mm *methodMetrics) handlingObserver() prometheus.Observer {
	return orLookUp(mm.handling, mm.m.handling, mm)
}

// orLookUp is the series looked up once, or when there is none (a method
// the server does not serve), vec's series of mm's labels, looked up now.
func orLookUp[T any](series T, vec interface{ WithLabelValues(...string) T }, mm *methodMetrics) T {
	if any(series) != nil {
		return series
	}
	return vec.WithLabelValues(mm.typ, mm.service, mm.method)
}

// handledCounter is the grpc_server_handled_total series of code.
func (mm *methodMetrics) handledCounter(code codes.Code) prometheus.Counter {
	if code < codes.Code(numCodes) && mm.handled[code] != nil {
		return mm.handled[code]
	}
	return mm.m.handled.WithLabelValues(mm.typ, mm.service, mm.method, code.String())
}

// numCodes is the number of gRPC status codes, OK to Unauthenticated.
const numCodes = int(codes.Unauthenticated) + 1

func newGRPCMetrics() *grpcMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &grpcMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		msgReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		msgSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets,
		}, labels),
		methods: map[string]*methodMetrics{},
	}
}

// register registers the five families on reg.
func (m *grpcMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.started, m.handled, m.msgReceived, m.msgSent, m.handling)
}

// initialize makes every series of every method gs serves, at zero, as
// the library's InitializeMetrics does, and keeps them for the calls. It
// must run before gs serves.
func (m *grpcMetrics) initialize(gs *grpc.Server) {
	for service, info := range gs.GetServiceInfo() {
		for _, mi := range info.Methods {
			m.methods["/"+service+"/"+mi.Name] = m.series(methodType(mi.IsClientStream, mi.IsServerStream), service, mi.Name)
		}
	}
}

// series looks up (making them) the series of one method.
func (m *grpcMetrics) series(typ, service, method string) *methodMetrics {
	mm := &methodMetrics{
		started:     m.started.WithLabelValues(typ, service, method),
		msgReceived: m.msgReceived.WithLabelValues(typ, service, method),
		msgSent:     m.msgSent.WithLabelValues(typ, service, method),
		handling:    m.handling.WithLabelValues(typ, service, method),
		m:           m, typ: typ, service: service, method: method,
	}
	for c := range numCodes {
		mm.handled[c] = m.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	return mm
}

// of returns the series of a call. Those of a method initialize did not
// see (none: grpc-go runs interceptors for the methods it serves only) are
// looked up as the call uses them, as the library does.
func (m *grpcMetrics) of(fullMethod, typ string) *methodMetrics {
	if mm, ok := m.methods[fullMethod]; ok {
		return mm
	}
	service, method := splitMethod(fullMethod)
	return &methodMetrics{m: m, typ: typ, service: service, method: method}
}

// callMetrics is one call being measured.
type callMetrics struct {
	mm    *methodMetrics
	start time.Time
}

// begin counts a call started, as the library's reporter does.
func (m *grpcMetrics) begin(fullMethod, typ string) callMetrics {
	c := callMetrics{start: time.Now(), mm: m.of(fullMethod, typ)}
	c.mm.startedCounter().Inc()
	return c
}

// beginUnary counts a unary call started and its request, which the
// handler has.
func (m *grpcMetrics) beginUnary(fullMethod string) callMetrics {
	c := m.begin(fullMethod, typeUnary)
	c.mm.receivedCounter().Inc()
	return c
}

// endUnary counts a unary call's answer, when there is one, and its end.
func (c callMetrics) endUnary(err error) {
	if err == nil {
		c.mm.sentCounter().Inc()
	}
	c.end(err)
}

// end counts a call's end with err's code and its handling time.
func (c callMetrics) end(err error) {
	c.mm.handledCounter(codeOf(err)).Inc()
	c.mm.handlingObserver().Observe(time.Since(c.start).Seconds())
}

// codeOf is the code the library labels a call that ended with err with:
// a status's code, a context error's (a bare context.Canceled is
// Canceled, not Unknown), else Unknown.
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	return grpcprom.FromError(err).Code()
}

// unaryInterceptor counts unary calls: the metrics part of the interceptor
// chain NewGRPC builds, on its own (callStats' calls, tests).
func (m *grpcMetrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c := m.beginUnary(info.FullMethod)
	resp, err := handler(ctx, req)
	c.endUnary(err)
	return resp, err
}

// streamInterceptor counts streaming calls and their messages.
func (m *grpcMetrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c := m.begin(info.FullMethod, methodType(info.IsClientStream, info.IsServerStream))
	err := handler(srv, &countedStream{ServerStream: ss, mm: c.mm})
	c.end(err)
	return err
}

// countedStream counts the messages of a stream that went through.
type countedStream struct {
	grpc.ServerStream
	mm *methodMetrics
}

func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.mm.sentCounter().Inc()
	}
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.mm.receivedCounter().Inc()
	}
	return err
}

// The grpc_type label values.
const (
	typeUnary        = "unary"
	typeClientStream = "client_stream"
	typeServerStream = "server_stream"
	typeBidiStream   = "bidi_stream"
)

func methodType(clientStream, serverStream bool) string {
	switch {
	case !clientStream && !serverStream:
		return typeUnary
	case clientStream && !serverStream:
		return typeClientStream
	case !clientStream && serverStream:
		return typeServerStream
	}
	return typeBidiStream
}

// splitMethod splits "/service/method" as the library does.
func splitMethod(fullMethod string) (service, method string) {
	fullMethod = strings.TrimPrefix(fullMethod, "/")
	if i := strings.Index(fullMethod, "/"); i >= 0 {
		return fullMethod[:i], fullMethod[i+1:]
	}
	return "unknown", "unknown"
}
