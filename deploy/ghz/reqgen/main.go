// Command reqgen writes the requests of one load-test run (deploy/ghz/load.sh)
// as ghz reads binary call data (ghz -B): each message preceded by its
// length as a varint. ghz decodes the file once and sends request number k
// the element k mod n, so that a run costs ghz no template or JSON work per
// call, the same for otpd, the baseline and the floor.
//
//	reqgen -kind send -first 3000000 -n 250000 -client-ip >send-1.bin
//
// Kinds: send (otp.v1.SendCodeRequest) and verify (VerifyCodeRequest with
// a wrong 7-digit code) to +1415 followed by first+k in 7 digits, and with
// -client-ip the address 10.a.b.c that is k in base 256; floor
// (grpc.health.v1.HealthCheckRequest) for the service <prefix>.r<k>.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

func main() {
	kind := flag.String("kind", "", "send, verify or floor")
	first := flag.Int("first", 0, "send, verify: the first recipient's number after +1415")
	n := flag.Int("n", 0, "how many requests")
	clientIP := flag.Bool("client-ip", false, "send, verify: a client_ip per request")
	prefix := flag.String("prefix", "", "floor: the services' prefix")
	flag.Parse()
	if err := write(os.Stdout, *kind, *first, *n, *clientIP, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "reqgen:", err)
		os.Exit(2)
	}
}

// write writes the n requests of kind to out, each preceded by its length.
func write(out io.Writer, kind string, first, n int, clientIP bool, prefix string) error {
	if n <= 0 {
		return errors.New("-n must be positive")
	}
	if (kind == "send" || kind == "verify") && (first < 1000000 || first+n > 9999999) {
		return errors.New("-first and -n must keep the numbers within 1000000..9999999")
	}
	w := bufio.NewWriterSize(out, 1<<20)
	var buf []byte
	for k := range n {
		var m proto.Message
		recipient := fmt.Sprintf("+1415%07d", first+k)
		ip := ""
		if clientIP {
			ip = fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255)
		}
		switch kind {
		case "send":
			m = &otpv1.SendCodeRequest{Recipient: recipient, UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, ClientIp: ip}
		case "verify":
			m = &otpv1.VerifyCodeRequest{Recipient: recipient, UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, ClientIp: ip, Code: "0000000"}
		case "floor":
			m = &grpc_health_v1.HealthCheckRequest{Service: fmt.Sprintf("%s.r%d", prefix, k)}
		default:
			return fmt.Errorf("-kind must be send, verify or floor (got %q)", kind)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		buf = protowire.AppendVarint(buf[:0], uint64(len(b)))
		if _, err := w.Write(append(buf, b...)); err != nil {
			return err
		}
	}
	return w.Flush()
}
