package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// The entry label values of otpd_rpc_calls_total: how a call came in.
const (
	entryGRPC     = "grpc"     // gRPC, on the gRPC listener or listen.api
	entryConnect  = "connect"  // the Connect protocol on listen.api
	entryGRPCWeb  = "grpc_web" // gRPC-Web on listen.api
	entryLogto    = "logto"    // Logto's HTTP connectors, /hooks/logto/* on listen.api
	entrySupabase = "supabase" // Supabase Auth's hooks, /hooks/supabase/* on listen.api
)

// Bounds of the API listener's HTTP server. Bodies are bounded by the
// transcoder at maxTransportBytes, as gRPC requests are by grpc-go.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiMaxHeaderBytes    = 16 << 10
	apiShutdownGrace     = 5 * time.Second
)

// apiCall is what the API listener knows of one HTTP request, carried to
// the gRPC server's interceptors and stats handler in its context.
type apiCall struct {
	entry string

	mu         sync.Mutex
	bodyErr    error  // why the request body was refused before the gRPC server read it
	answeredBy string // who refused it
}

type apiCallKey struct{}

func apiCallFrom(ctx context.Context) *apiCall {
	ac, _ := ctx.Value(apiCallKey{}).(*apiCall)
	return ac
}

// entryOf is the entry point of the call of ctx.
func entryOf(ctx context.Context) string {
	if ac := apiCallFrom(ctx); ac != nil {
		return ac.entry
	}
	return entryGRPC
}

// refusal is the status of the refusal of the request body before the
// gRPC server read it (too large, a broken envelope), if it was refused,
// and who refused it.
func (ac *apiCall) refusal() (who string, refused error) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.bodyErr == nil {
		return "", nil
	}
	var ce *connect.Error
	if errors.As(ac.bodyErr, &ce) {
		return ac.answeredBy, status.Error(codes.Code(ce.Code()), ce.Message()) //nolint:gosec // connect codes are gRPC's
	}
	return "", nil
}

// refuse records err as the refusal of the request body by who, once.
func (ac *apiCall) refuse(err error, who string) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.bodyErr == nil {
		ac.bodyErr, ac.answeredBy = err, who
	}
}

// watchedBody records the first error other than EOF that the transcoder
// returns while the gRPC server reads the request: the transcoder has then
// answered the caller itself, and callStats reports the call with it.
type watchedBody struct {
	io.ReadCloser
	call *apiCall
}

func (b watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.call.refuse(err, "vanguard")
	}
	return n, err
}

// NewAPIHandler returns the handler of listen.api: a vanguard transcoder
// in front of g's gRPC server (grpc.Server.ServeHTTP), so that every call
// runs g's interceptors unchanged: metrics, caller auth (the Authorization
// header is gRPC metadata there; the client certificate of an HTTPS
// connection reaches the auth interceptor as the peer's TLS state), the
// call log, malformed-request handling and panic recovery. It accepts the
// Connect protocol (unary, JSON and binary), gRPC-Web and gRPC for every
// service g serves; there is no REST mapping (the protos have no HTTP
// annotations), so any other request is 404 or 415.
//
// It also serves the identity servers' delivery hooks (see logtoHook and
// supabaseHook), which call the gRPC server the same way; hooks
// configures them.
func NewAPIHandler(g GRPC, hooks Hooks) (http.Handler, error) {
	rpc, err := newRPCHandler(g)
	if err != nil {
		return nil, err
	}
	lh, sh := newLogtoHook(rpc, hooks), newSupabaseHook(rpc, hooks)
	paths := map[string]http.Handler{
		logtoSMSPath:      lh.handler(otpv1.Channel_CHANNEL_SMS),
		logtoEmailPath:    lh.handler(otpv1.Channel_CHANNEL_EMAIL),
		supabaseSMSPath:   sh.handler(otpv1.Channel_CHANNEL_SMS),
		supabaseEmailPath: sh.handler(otpv1.Channel_CHANNEL_EMAIL),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Not a ServeMux: RPC paths reach the transcoder as they came.
		if h, ok := paths[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
		rpc.ServeHTTP(w, r)
	}), nil
}

// newRPCHandler is NewAPIHandler without the hooks: the RPCs.
func newRPCHandler(g GRPC) (http.Handler, error) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ac := apiCallFrom(r.Context()); ac != nil && r.Body != nil {
			r.Body = watchedBody{ReadCloser: r.Body, call: ac}
		}
		g.Server.ServeHTTP(w, r)
	})
	var services []*vanguard.Service
	names := make([]string, 0, len(g.Server.GetServiceInfo()))
	for name := range g.Server.GetServiceInfo() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		services = append(services, vanguard.NewService(name, inner))
	}
	tc, err := vanguard.NewTranscoder(services,
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			return markingJSONCodec{JSONCodec: vanguard.NewJSONCodec(res)}
		}),
		vanguard.WithDefaultServiceOptions(
			// The gRPC server speaks gRPC with protobuf only: its codec is
			// otpd's requestCodec, whatever the content subtype.
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithMaxMessageBufferBytes(maxTransportBytes),
		))
	if err != nil {
		return nil, err
	}
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entry := entryConnect
		ct := r.Header.Get("Content-Type")
		switch {
		case ct == "application/grpc-web" || strings.HasPrefix(ct, "application/grpc-web+"):
			entry = entryGRPCWeb
		case ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+"):
			entry = entryGRPC
		case r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "":
			// A Connect unary POST (curl, a plain fetch) without the
			// optional version header would be taken for REST, which
			// otpd does not serve.
			r.Header.Set("Connect-Protocol-Version", "1")
		}
		ctx := r.Context()
		ac := apiCallFrom(ctx) // a hook's call, made in process
		if ac == nil {
			ac = &apiCall{entry: entry}
			ctx = context.WithValue(ctx, apiCallKey{}, ac)
			r = r.WithContext(ctx)
		}
		if entry == entryConnect && r.ContentLength == 0 && isJSON(ct) {
			// An empty body is the empty message, as it is in binary;
			// the transcoder would pass the gRPC server no message.
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("{}")), 2
		}
		if r.ContentLength > maxTransportBytes+grpcEnvelopeBytes && g.calls != nil && g.calls.unary[r.URL.Path] && errw.IsSupported(r) {
			// Refused unread, as grpc-go refuses a message over
			// maxTransportBytes, and counted and logged the same way.
			start := time.Now()
			cerr := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("request of %d bytes is larger than the limit of %d bytes", r.ContentLength, maxTransportBytes))
			if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: "MESSAGE_TOO_LARGE", Domain: errorDomain, Metadata: map[string]string{
				"max_bytes": strconv.Itoa(maxTransportBytes),
			}}); err == nil {
				cerr.AddDetail(d)
			}
			ac.refuse(cerr, "otpd-api")
			_ = errw.Write(w, r, cerr)
			g.calls.report(ctx, r.URL.Path, status.Error(codes.ResourceExhausted, cerr.Message()), time.Since(start))
			return
		}
		tc.ServeHTTP(w, r)
	}), nil
}

// grpcEnvelopeBytes is the size of the envelope of a gRPC(-Web) message.
const grpcEnvelopeBytes = 5

// isJSON reports whether ct is a Connect unary JSON content type.
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(strings.ToLower(mt)) == "application/json"
}

// markingJSONCodec is vanguard's JSON codec, except that a request that
// does not decode is not refused by the transcoder, before the gRPC
// server sees the call, but marked for refuseMalformed (see markField):
// caller auth, metrics and the call log then see it as any malformed call.
type markingJSONCodec struct{ *vanguard.JSONCodec }

// jsonErrPosition finds where protojson found the JSON wrong; the rest of
// its message may quote the caller's values (a code), which otpd never
// writes back.
var jsonErrPosition = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

func (c markingJSONCodec) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(data, msg); err != nil {
		where := ""
		if m := jsonErrPosition.FindStringSubmatch(err.Error()); m != nil {
			where = "line " + m[1] + ", column " + m[2]
		}
		mark(msg, malformed{kind: malformedJSON, field: where})
	}
	return nil
}

// apiServer is the HTTP server of listen.api: HTTP/1.1 and HTTP/2 over
// TLS when tlsCfg is set (the gRPC listener's, certificates reloaded the
// same way), else HTTP/1.1 and h2c.
func apiServer(h http.Handler, lc Listen, tlsCfg *tls.Config) *http.Server {
	s := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: apiReadHeaderTimeout,
		IdleTimeout:       lc.IdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: lc.MaxConcurrentStreams,
			MaxReadFrameSize:     16 << 10,
		},
	}
	s.Protocols.SetHTTP1(true)
	if tlsCfg != nil {
		c := tlsCfg.Clone()
		c.NextProtos = []string{"h2", "http/1.1"}
		s.TLSConfig = c
		s.Protocols.SetHTTP2(true)
	} else {
		s.Protocols.SetUnencryptedHTTP2(true)
	}
	return s
}
