// Command otpctl is a small client for otpd:
//
//	otpctl [-addr 127.0.0.1:50051] send   -to +14155550123 -usage sign-in
//	otpctl [-addr unix:///run/otpd/otpd.sock] verify -to +14155550123 -usage sign-in -code 123456
//	otpctl health
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
	"os"
	"strings"
	"time"

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

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usageText = `usage: otpctl [-addr ADDR] [-timeout D] [TLS and token flags] COMMAND [flags]

commands:
  send    -to RECIPIENT -usage TYPE [-channel sms|email] [-locale TAG] [-ip IP] [-idempotency-key KEY]
  verify  -to RECIPIENT -usage TYPE -code CODE [-channel sms|email] [-ip IP]
  health  [-service NAME]

TYPE is register, sign-in, forgot-password or generic.
ADDR is host:port or unix:///path/to.sock (default $OTPD_ADDR or 127.0.0.1:50051).

TLS and tokens, for an otpd with tls or auth configured:
  -tls               use TLS (implied by -ca, -cert)
  -ca FILE           CA bundle that issued otpd's certificate (default: system roots)
  -cert FILE -key FILE  client certificate and key, for mTLS
  -server-name NAME  name to check otpd's certificate against (default: ADDR's host)
  -token TOKEN       bearer token (default $OTPD_TOKEN)
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("otpctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText) }
	defAddr := os.Getenv("OTPD_ADDR")
	if defAddr == "" {
		defAddr = "127.0.0.1:50051"
	}
	addr := fs.String("addr", defAddr, "otpd gRPC address")
	timeout := fs.Duration("timeout", 20*time.Second, "call deadline")
	useTLS := fs.Bool("tls", false, "use TLS")
	caFile := fs.String("ca", "", "CA bundle of otpd's certificate")
	certFile := fs.String("cert", "", "client certificate (mTLS)")
	keyFile := fs.String("key", "", "client key (mTLS)")
	serverName := fs.String("server-name", "", "name in otpd's certificate")
	token := fs.String("token", os.Getenv("OTPD_TOKEN"), "bearer token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]

	creds := insecure.NewCredentials()
	if *useTLS || *caFile != "" || *certFile != "" || *keyFile != "" {
		cfg, err := clientTLS(*caFile, *certFile, *keyFile, *serverName)
		if err != nil {
			fmt.Fprintf(stderr, "otpctl: %v\n", err)
			return 2
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(target(*addr), grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "otpctl: %v\n", err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
	}

	var resp proto.Message
	switch cmd {
	case "send":
		req, ok := sendFlags(rest, stderr)
		if !ok {
			return 2
		}
		resp, err = otpv1.NewOtpServiceClient(conn).SendCode(ctx, req)
	case "verify":
		req, ok := verifyFlags(rest, stderr)
		if !ok {
			return 2
		}
		resp, err = otpv1.NewOtpServiceClient(conn).VerifyCode(ctx, req)
	case "health":
		hf := flag.NewFlagSet("health", flag.ContinueOnError)
		hf.SetOutput(stderr)
		svc := hf.String("service", "", `service name ("" for the whole server, or otp.v1.OtpService)`)
		if hf.Parse(rest) != nil {
			return 2
		}
		resp, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *svc})
		if err == nil && resp.(*healthpb.HealthCheckResponse).GetStatus() != healthpb.HealthCheckResponse_SERVING {
			printJSON(stdout, resp)
			return 1
		}
	default:
		fmt.Fprintf(stderr, "otpctl: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	if err != nil {
		printError(stderr, err)
		return 1
	}
	printJSON(stdout, resp)
	return 0
}

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

func newTargetFlags(name, toHelp string, stderr io.Writer) (*flag.FlagSet, targetFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs, targetFlags{
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

func sendFlags(args []string, stderr io.Writer) (*otpv1.SendCodeRequest, bool) {
	fs, tf := newTargetFlags("send", "recipient: E.164 phone number or email address", stderr)
	locale := fs.String("locale", "", "BCP 47 locale")
	key := fs.String("idempotency-key", "", "idempotency key")
	if fs.Parse(args) != nil {
		return nil, false
	}
	u, ch, ok := tf.parse(stderr)
	return &otpv1.SendCodeRequest{
		Recipient: *tf.to, Channel: ch, UsageType: u, Locale: *locale, ClientIp: *tf.ip, IdempotencyKey: *key,
	}, ok
}

func verifyFlags(args []string, stderr io.Writer) (*otpv1.VerifyCodeRequest, bool) {
	fs, tf := newTargetFlags("verify", "recipient the code was sent to", stderr)
	code := fs.String("code", "", "the code")
	if fs.Parse(args) != nil {
		return nil, false
	}
	u, ch, ok := tf.parse(stderr)
	return &otpv1.VerifyCodeRequest{Recipient: *tf.to, Channel: ch, UsageType: u, Code: *code, ClientIp: *tf.ip}, ok
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

func printError(w io.Writer, err error) {
	st := status.Convert(err)
	fmt.Fprintf(w, "error: %s: %s\n", st.Code(), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(w, "  field %s: %s\n", v.GetField(), v.GetDescription())
			}
		case *errdetails.RetryInfo:
			fmt.Fprintf(w, "  retry after %s\n", d.GetRetryDelay().AsDuration())
		case *errdetails.QuotaFailure:
			for _, v := range d.GetViolations() {
				fmt.Fprintf(w, "  quota %s: %s\n", v.GetSubject(), v.GetDescription())
			}
		case *errdetails.ErrorInfo:
			fmt.Fprintf(w, "  reason %s %v\n", d.GetReason(), d.GetMetadata())
		}
	}
}
