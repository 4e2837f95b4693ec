package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// BenchmarkAPIOverhead compares one SendCode (a service that answers at
// once) over gRPC with the same call through listen.api: Connect JSON,
// Connect binary, both over HTTP/1.1 on loopback. The difference is the
// cost of the HTTP server and the transcoding. It also compares one
// DeliverCode over gRPC with the same delivery asked by Logto's and
// Supabase's hooks (the Supabase request signed per iteration, as each
// has its own webhook-id).
func BenchmarkAPIOverhead(b *testing.B) {
	reg := prometheus.NewRegistry()
	g := NewGRPC(DefaultConfig().Listen, &countingService{}, nil, nil, reg, slogJSON(io.Discard))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Server.Serve(lis) }()
	b.Cleanup(g.Server.Stop)
	hooks := DefaultConfig().Hooks
	hooks.Supabase.Secrets = []string{supabaseSecret}
	h, err := NewAPIHandler(g, hooks)
	if err != nil {
		b.Fatal(err)
	}
	alis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := apiServer(h, DefaultConfig().Listen, nil)
	go func() { _ = srv.Serve(alis) }()
	b.Cleanup(func() { _ = srv.Close() })
	url := "http://" + alis.Addr().String() + "/otp.v1.OtpService/SendCode"
	req := &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}

	b.Run("grpc", func(b *testing.B) {
		c := otpv1.NewOtpServiceClient(dialPlain(b, lis.Addr().String()))
		for b.Loop() {
			if _, err := c.SendCode(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	post := func(b *testing.B, contentType string, body []byte) {
		do(b, func() *http.Request {
			r, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
			r.Header.Set("Content-Type", contentType)
			return r
		})
	}
	b.Run("connect_json", func(b *testing.B) {
		post(b, "application/json", []byte(`{"recipient": "+14155550123", "usageType": "USAGE_TYPE_SIGN_IN"}`))
	})
	b.Run("connect_proto", func(b *testing.B) {
		raw := []byte{0x0a, 0x0c, '+', '1', '4', '1', '5', '5', '5', '5', '0', '1', '2', '3', 0x18, 0x02}
		post(b, "application/proto", raw)
	})
	b.Run("grpc_deliver", func(b *testing.B) {
		c := otpv1.NewOtpServiceClient(dialPlain(b, lis.Addr().String()))
		req := &otpv1.DeliverCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: "483920", ClientIp: "203.0.113.7"}
		for b.Loop() {
			if _, err := c.DeliverCode(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	base := "http://" + alis.Addr().String()
	b.Run("logto_hook", func(b *testing.B) {
		body := []byte(`{"to":"14155550123","type":"SignIn","payload":{"code":"483920","locale":"en"},"ip":"203.0.113.7"}`)
		do(b, func() *http.Request {
			r, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+logtoSMSPath, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			return r
		})
	})
	b.Run("supabase_hook", func(b *testing.B) {
		body := smsHook("14155550123", "483920", "confirmation", "203.0.113.7")
		// Ids new across runs of this benchmark (-count): the hook
		// refuses one it has seen.
		prefix, n := "msg_bench_"+strconv.FormatInt(time.Now().UnixNano(), 36)+"_", 0
		do(b, func() *http.Request {
			n++
			id, ts := prefix+strconv.Itoa(n), time.Now()
			r, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+supabaseSMSPath, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Webhook-Id", id)
			r.Header.Set("Webhook-Timestamp", strconv.FormatInt(ts.Unix(), 10))
			r.Header.Set("Webhook-Signature", sign(supabaseKey1, id, ts, body))
			return r
		})
	})
}

// do sends the request newReq makes once per iteration, over keep-alive
// connections, and wants 200 each time.
func do(b *testing.B, newReq func() *http.Request) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for b.Loop() {
		resp, err := client.Do(newReq())
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
