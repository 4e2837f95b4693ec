package main

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// messages splits what write wrote into its length-prefixed messages.
func messages(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		n, k := protowire.ConsumeVarint(b)
		if k < 0 || uint64(len(b)-k) < n {
			t.Fatalf("bad length prefix at %d bytes from the end", len(b))
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out
}

// The requests are those the load test's templates describe: request k
// to +1415<first+k> from 10.a.b.c (k in base 256), or the floor's
// service <prefix>.r<k>.
func TestWrite(t *testing.T) {
	var buf bytes.Buffer
	if err := write(&buf, "send", 3000000, 70000, true, ""); err != nil {
		t.Fatal(err)
	}
	msgs := messages(t, buf.Bytes())
	if len(msgs) != 70000 {
		t.Fatalf("%d messages, want 70000", len(msgs))
	}
	var send otpv1.SendCodeRequest
	if err := proto.Unmarshal(msgs[65793], &send); err != nil {
		t.Fatal(err)
	}
	if send.GetRecipient() != "+14153065793" || send.GetClientIp() != "10.1.1.1" || send.GetUsageType() != otpv1.UsageType_USAGE_TYPE_SIGN_IN {
		t.Errorf("send request 65793 = %v", &send)
	}

	buf.Reset()
	if err := write(&buf, "verify", 8000000, 3, false, ""); err != nil {
		t.Fatal(err)
	}
	var verify otpv1.VerifyCodeRequest
	if err := proto.Unmarshal(messages(t, buf.Bytes())[2], &verify); err != nil {
		t.Fatal(err)
	}
	if verify.GetRecipient() != "+14158000002" || verify.GetCode() != "0000000" || verify.GetClientIp() != "" {
		t.Errorf("verify request 2 = %v", &verify)
	}

	buf.Reset()
	if err := write(&buf, "floor", 0, 12, false, "s1"); err != nil {
		t.Fatal(err)
	}
	var check grpc_health_v1.HealthCheckRequest
	if err := proto.Unmarshal(messages(t, buf.Bytes())[11], &check); err != nil {
		t.Fatal(err)
	}
	if check.GetService() != "s1.r11" {
		t.Errorf("floor request 11 = %v", &check)
	}

	for _, bad := range []struct {
		kind     string
		first, n int
	}{{"send", 3000000, 0}, {"send", 9999990, 100}, {"status", 3000000, 1}} {
		if err := write(&bytes.Buffer{}, bad.kind, bad.first, bad.n, false, ""); err == nil {
			t.Errorf("write(%q, %d, %d) = nil, want an error", bad.kind, bad.first, bad.n)
		}
	}
}
