package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// BenchmarkAPIOverhead compares one SendCode (a service that answers at
// once) over gRPC with the same call through listen.api: Connect JSON,
// Connect binary, both over HTTP/1.1 on loopback. The difference is the
// cost of the HTTP server and the transcoding.
func BenchmarkAPIOverhead(b *testing.B) {
	reg := prometheus.NewRegistry()
	g := NewGRPC(DefaultConfig().Listen, &countingService{}, nil, nil, reg, slogJSON(io.Discard))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Server.Serve(lis) }()
	b.Cleanup(g.Server.Stop)
	h, err := NewAPIHandler(g, Hooks{})
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
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		for b.Loop() {
			resp, err := client.Post(url, contentType, bytes.NewReader(body))
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
	b.Run("connect_json", func(b *testing.B) {
		post(b, "application/json", []byte(`{"recipient": "+14155550123", "usageType": "USAGE_TYPE_SIGN_IN"}`))
	})
	b.Run("connect_proto", func(b *testing.B) {
		raw := []byte{0x0a, 0x0c, '+', '1', '4', '1', '5', '5', '5', '5', '0', '1', '2', '3', 0x18, 0x02}
		post(b, "application/proto", raw)
	})
}
