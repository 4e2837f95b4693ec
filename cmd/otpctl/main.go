// Command otpctl is a small client for otpd:
//
//	otpctl [-addr 127.0.0.1:50051] send   -to +14155550123 -usage sign-in
//	otpctl [-addr unix:///run/otpd/otpd.sock] verify -to +14155550123 -usage sign-in -code 123456
//	otpctl status -to +14155550123 -usage sign-in
//	otpctl cancel -to +14155550123 -usage sign-in
//	otpctl health -addr 127.0.0.1:50051
//	otpctl version
//
// Responses print as JSON on stdout; errors print their gRPC code and
// details on stderr with exit status 1.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// build does). Unset, otpctl reports the module version Go recorded, if any.
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usageText = `usage: otpctl [global flags] COMMAND [flags]

commands:
  send     -to RECIPIENT -usage TYPE [-channel sms|email] [-locale TAG] [-ip IP] [-idempotency-key KEY]
  verify   -to RECIPIENT -usage TYPE -code CODE [-channel sms|email] [-ip IP]
  status   -to RECIPIENT -usage TYPE [-channel sms|email]   is a code live, until when, attempts left, resend after
  cancel   -to RECIPIENT -usage TYPE [-channel sms|email]   kill the live code (and those kept with it)
  health   [-service NAME]
  version  print otpctl's version (also -version)
  help     print this help (also -h, --help)

TYPE is register, sign-in, forgot-password or generic.

global flags, before or after the command:
  -addr ADDR         host:port or unix:///path/to.sock (default $OTPD_ADDR or 127.0.0.1:50051)
  -timeout D         call deadline (default 20s)

TLS and tokens, for an otpd with tls or auth configured (make certs writes dev certificates):
  -tls               use TLS (implied by -ca, -cert)
  -ca FILE           CA bundle that issued otpd's certificate (default: system roots)
  -cert FILE -key FILE  client certificate and key, for mTLS
  -server-name NAME  name to check otpd's certificate against (default: ADDR's host)
  -token TOKEN       bearer token (default $OTPD_TOKEN)

Exit status: 0 on success, 1 when the call fails (or health is not SERVING), 2 for a bad command line.
`

// globals are the flags every command takes, before or after its name.
type globals struct {
	addr, caFile, certFile, keyFile, serverName, token string
	timeout                                            time.Duration
	useTLS, version                                    bool
}

// register adds the global flags to fs, their current values as defaults,
// so that a command's flag set parses them too.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "otpd gRPC address")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "call deadline")
	fs.BoolVar(&g.useTLS, "tls", g.useTLS, "use TLS")
	fs.StringVar(&g.caFile, "ca", g.caFile, "CA bundle of otpd's certificate")
	fs.StringVar(&g.certFile, "cert", g.certFile, "client certificate (mTLS)")
	fs.StringVar(&g.keyFile, "key", g.keyFile, "client key (mTLS)")
	fs.StringVar(&g.serverName, "server-name", g.serverName, "name in otpd's certificate")
	fs.StringVar(&g.token, "token", g.token, "bearer token")
	fs.BoolVar(&g.version, "version", g.version, "print the version")
}

// newFlagSet is a flag set that prints parse errors on stderr and leaves
// usage to parse.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	return fs
}

// parse parses args with fs and allows no positional argument after the
// flags. It returns -1 to go on, or the exit code: 0 after -h (usage on
// stdout), 2 after an error (usage on stderr).
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usageText)
		return 0
	case err != nil: // the flag package printed what is wrong
		fmt.Fprint(stderr, usageText)
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "otpctl %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fmt.Fprint(stderr, usageText)
		return 2
	}
	return -1
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{addr: os.Getenv("OTPD_ADDR"), timeout: 20 * time.Second, token: os.Getenv("OTPD_TOKEN")}
	if g.addr == "" {
		g.addr = "127.0.0.1:50051"
	}
	fs := newFlagSet("otpctl", stderr)
	g.register(fs)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usageText)
		return 0
	} else if err != nil {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	if g.version && fs.NArg() == 0 {
		printVersion(stdout)
		return 0
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]

	// Each command parses its own flags and the global ones, then the
	// call runs.
	var call func(ctx context.Context, conn *grpc.ClientConn) (proto.Message, error)
	cfs := newFlagSet(cmd, stderr)
	g.register(cfs)
	parseCmd := func() int {
		if code := parse(cfs, rest, stdout, stderr); code >= 0 {
			return code
		}
		if g.version { // otpctl send -version: the version, no call
			printVersion(stdout)
			return 0
		}
		return -1
	}
	switch cmd {
	case "help":
		if code := parseCmd(); code >= 0 {
			return code
		}
		fmt.Fprint(stdout, usageText)
		return 0
	case "version":
		if code := parseCmd(); code >= 0 {
			return code
		}
		printVersion(stdout)
		return 0
	case "send":
		build := sendFlags(cfs)
		if code := parseCmd(); code >= 0 {
			return code
		}
		req, ok := build(stderr)
		if !ok {
			return 2
		}
		call = func(ctx context.Context, conn *grpc.ClientConn) (proto.Message, error) {
			return otpv1.NewOtpServiceClient(conn).SendCode(ctx, req)
		}
	case "verify":
		build := verifyFlags(cfs)
		if code := parseCmd(); code >= 0 {
			return code
		}
		req, ok := build(stderr)
		if !ok {
			return 2
		}
		call = func(ctx context.Context, conn *grpc.ClientConn) (proto.Message, error) {
			return otpv1.NewOtpServiceClient(conn).VerifyCode(ctx, req)
		}
	case "status", "cancel":
		build := codeFlags(cfs)
		if code := parseCmd(); code >= 0 {
			return code
		}
		to, ch, u, ok := build(stderr)
		if !ok {
			return 2
		}
		call = func(ctx context.Context, conn *grpc.ClientConn) (proto.Message, error) {
			c := otpv1.NewOtpServiceClient(conn)
			if cmd == "cancel" {
				return c.CancelCode(ctx, &otpv1.CancelCodeRequest{Recipient: to, Channel: ch, UsageType: u})
			}
			return c.GetCodeStatus(ctx, &otpv1.GetCodeStatusRequest{Recipient: to, Channel: ch, UsageType: u})
		}
	case "health":
		svc := cfs.String("service", "", `service name ("" for the whole server, or otp.v1.OtpService)`)
		if code := parseCmd(); code >= 0 {
			return code
		}
		call = func(ctx context.Context, conn *grpc.ClientConn) (proto.Message, error) {
			return healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *svc})
		}
	default:
		fmt.Fprintf(stderr, "otpctl: unknown command %q\n", cmd)
		fmt.Fprint(stderr, usageText)
		return 2
	}

	creds := insecure.NewCredentials()
	if g.useTLS || g.caFile != "" || g.certFile != "" || g.keyFile != "" {
		cfg, err := clientTLS(g.caFile, g.certFile, g.keyFile, g.serverName)
		if err != nil {
			fmt.Fprintf(stderr, "otpctl: %v\n", err)
			return 2
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(target(g.addr), grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "otpctl: %v\n", err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	if g.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+g.token)
	}
	resp, err := call(ctx, conn)
	if err != nil {
		printError(stderr, err)
		return 1
	}
	printJSON(stdout, resp)
	if h, ok := resp.(*healthpb.HealthCheckResponse); ok && h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return 1
	}
	return 0
}

// versionString is the version set at build time or, without one, the
// module version Go recorded (go install ...@v1.2.3).
func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func printVersion(w io.Writer) { fmt.Fprintln(w, "otpctl", versionString()) }

// clientTLS is the TLS configuration for otpd: ca (or the system roots) to
// check its certificate, and certFile and keyFile to present, for mTLS.
func clientTLS(ca, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("-ca %s: no PEM certificate in it", ca)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("-cert and -key go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("-cert, -key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// target turns a plain host:port into a passthrough target, so that no
// resolver is involved; unix:// addresses pass as they are.
func target(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "passthrough:///" + addr
}

// target flags are what send and verify share: who, on which channel, for
// what, from where.
type targetFlags struct{ to, usage, channel, ip *string }

func newTargetFlags(fs *flag.FlagSet, toHelp string) targetFlags {
	return targetFlags{
		to:      fs.String("to", "", toHelp),
		usage:   fs.String("usage", "", "usage type: register, sign-in, forgot-password, generic"),
		channel: fs.String("channel", "", "sms or email (default: inferred)"),
		ip:      fs.String("ip", "", "end user's IP address"),
	}
}

func (f targetFlags) parse(stderr io.Writer) (otpv1.UsageType, otpv1.Channel, bool) {
	u, ok1 := parseUsage(*f.usage, stderr)
	ch, ok2 := parseChannel(*f.channel, stderr)
	return u, ch, ok1 && ok2
}

// sendFlags adds send's flags to fs and returns what builds the request
// once fs is parsed.
func sendFlags(fs *flag.FlagSet) func(stderr io.Writer) (*otpv1.SendCodeRequest, bool) {
	tf := newTargetFlags(fs, "recipient: E.164 phone number or email address")
	locale := fs.String("locale", "", "BCP 47 locale")
	key := fs.String("idempotency-key", "", "idempotency key")
	return func(stderr io.Writer) (*otpv1.SendCodeRequest, bool) {
		u, ch, ok := tf.parse(stderr)
		return &otpv1.SendCodeRequest{
			Recipient: *tf.to, Channel: ch, UsageType: u, Locale: *locale, ClientIp: *tf.ip, IdempotencyKey: *key,
		}, ok
	}
}

// verifyFlags adds verify's flags to fs and returns what builds the
// request once fs is parsed.
func verifyFlags(fs *flag.FlagSet) func(stderr io.Writer) (*otpv1.VerifyCodeRequest, bool) {
	tf := newTargetFlags(fs, "recipient the code was sent to")
	code := fs.String("code", "", "the code")
	return func(stderr io.Writer) (*otpv1.VerifyCodeRequest, bool) {
		u, ch, ok := tf.parse(stderr)
		return &otpv1.VerifyCodeRequest{Recipient: *tf.to, Channel: ch, UsageType: u, Code: *code, ClientIp: *tf.ip}, ok
	}
}

// codeFlags adds the flags of status and cancel to fs (who, on which
// channel, for what) and returns what reads them once fs is parsed.
func codeFlags(fs *flag.FlagSet) func(stderr io.Writer) (string, otpv1.Channel, otpv1.UsageType, bool) {
	to := fs.String("to", "", "recipient the code was sent to")
	usage := fs.String("usage", "", "usage type: register, sign-in, forgot-password, generic")
	channel := fs.String("channel", "", "sms or email (default: inferred)")
	return func(stderr io.Writer) (string, otpv1.Channel, otpv1.UsageType, bool) {
		u, ok1 := parseUsage(*usage, stderr)
		ch, ok2 := parseChannel(*channel, stderr)
		return *to, ch, u, ok1 && ok2
	}
}

func parseUsage(s string, stderr io.Writer) (otpv1.UsageType, bool) {
	name := "USAGE_TYPE_" + strings.ToUpper(strings.NewReplacer("-", "_").Replace(s))
	switch strings.ToLower(s) {
	case "signin":
		name = "USAGE_TYPE_SIGN_IN"
	case "forgotpassword":
		name = "USAGE_TYPE_FORGOT_PASSWORD"
	}
	v, ok := otpv1.UsageType_value[name]
	if !ok || v == 0 {
		fmt.Fprintf(stderr, "otpctl: -usage must be register, sign-in, forgot-password or generic, not %q\n", s)
		return 0, false
	}
	return otpv1.UsageType(v), true
}

func parseChannel(s string, stderr io.Writer) (otpv1.Channel, bool) {
	switch strings.ToLower(s) {
	case "":
		return otpv1.Channel_CHANNEL_UNSPECIFIED, true
	case "sms":
		return otpv1.Channel_CHANNEL_SMS, true
	case "email":
		return otpv1.Channel_CHANNEL_EMAIL, true
	}
	fmt.Fprintf(stderr, "otpctl: -channel must be sms or email, not %q\n", s)
	return 0, false
}

func printJSON(w io.Writer, m proto.Message) {
	b, _ := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(m)
	fmt.Fprintln(w, string(b))
}

// printError prints a gRPC error and its details, one line each: the
// ErrorInfo reason with its metadata as key=value, the retry delay, each
// field violation of a BadRequest, and quota violations the reason's
// metadata has not already named.
func printError(w io.Writer, err error) {
	st := status.Convert(err)
	fmt.Fprintf(w, "error: %s: %s\n", st.Code(), st.Message())
	named := map[string]bool{} // metadata values of ErrorInfo: the limit, for one
	for _, d := range st.Details() {
		if d, ok := d.(*errdetails.ErrorInfo); ok {
			for _, v := range d.GetMetadata() {
				named[v] = true
			}
		}
	}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			line := "  reason " + d.GetReason()
			for _, k := range slices.Sorted(maps.Keys(d.GetMetadata())) {
				line += " " + k + "=" + quoteIfNeeded(d.GetMetadata()[k])
			}
			fmt.Fprintln(w, line)
		case *errdetails.RetryInfo:
			fmt.Fprintf(w, "  retry after %s\n", roundDelay(d.GetRetryDelay().AsDuration()))
		case *errdetails.QuotaFailure:
			for _, v := range d.GetViolations() {
				switch {
				case named[v.GetSubject()]:
				case strings.Contains(v.GetDescription(), v.GetSubject()):
					fmt.Fprintf(w, "  quota: %s\n", v.GetDescription())
				default:
					fmt.Fprintf(w, "  quota %s: %s\n", v.GetSubject(), v.GetDescription())
				}
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(w, "  field %s: %s\n", v.GetField(), v.GetDescription())
			}
		case *errdetails.PreconditionFailure:
			for _, v := range d.GetViolations() {
				fmt.Fprintf(w, "  precondition %s %s: %s\n", v.GetType(), v.GetSubject(), v.GetDescription())
			}
		case *errdetails.LocalizedMessage:
			fmt.Fprintf(w, "  message (%s): %s\n", d.GetLocale(), d.GetMessage())
		case *errdetails.Help:
			for _, l := range d.GetLinks() {
				fmt.Fprintf(w, "  see %s: %s\n", l.GetDescription(), l.GetUrl())
			}
		case proto.Message:
			b, _ := protojson.Marshal(d)
			fmt.Fprintf(w, "  %s %s\n", d.ProtoReflect().Descriptor().FullName(), b)
		case error: // a detail this binary cannot decode
			fmt.Fprintf(w, "  detail: %v\n", d)
		}
	}
}

// roundDelay rounds a retry delay for people: to 0.1s from a second up, to
// the millisecond below.
func roundDelay(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// quoteIfNeeded quotes a metadata value that is empty or holds a blank, an
// '=' or a character that does not print.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r == '=' || r == '"' || !unicode.IsPrint(r) || unicode.IsSpace(r) }) {
		return strconv.Quote(s)
	}
	return s
}
