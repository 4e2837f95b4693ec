// Command baseline is the yardstick of otpd's load test (deploy/ghz): the
// least work a gRPC service that keeps per-recipient state in Redis can do
// per call. It is the performance floor of ../../../../shared/bench/floor
// (plain grpc-go, one small Lua round trip to Redis per call, nothing else),
// extended to answer otp.v1.OtpService too, so that ghz loads the baseline
// and otpd with the very same call, request data and settings.
//
// Every RPC it serves runs the floor's script (INCR + PEXPIRE on a key
// derived from the request) once and answers at once:
//
//   - grpc.health.v1.Health/Check: exactly the floor (key from "service").
//   - otp.v1.OtpService/SendCode: key from the recipient; answers a
//     SendCodeResponse shaped like otpd's (an id, channel, provider, times).
//   - otp.v1.OtpService/VerifyCode: key from the recipient; answers
//     VERIFY_RESULT_MISMATCH.
//
// It validates nothing, hashes nothing, renders nothing, delivers nothing and
// has no interceptors (no metrics, no logs): whatever otpd costs beyond it is
// otpd's own work.
//
//	baseline -listen 127.0.0.1:50061 -redis 127.0.0.1:6379 -db 1
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/timestamppb"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// script is the floor's: one small Lua round trip.
var script = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

const ttlMS = 600000

type health struct {
	healthpb.UnimplementedHealthServer
	rdb redis.UniversalClient
}

func (h *health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := script.Run(ctx, h.rdb, []string{"floor:{" + req.GetService() + "}"}, ttlMS).Err(); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

type otp struct {
	otpv1.UnimplementedOtpServiceServer
	rdb redis.UniversalClient
}

func (o *otp) SendCode(ctx context.Context, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	if err := script.Run(ctx, o.rdb, []string{"floor:{s:" + req.GetRecipient() + "}"}, ttlMS).Err(); err != nil {
		return nil, err
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	now := time.Now()
	return &otpv1.SendCodeResponse{
		VerificationId: base64.RawURLEncoding.EncodeToString(id[:]),
		Channel:        otpv1.Channel_CHANNEL_SMS,
		Provider:       "baseline",
		ExpiresAt:      timestamppb.New(now.Add(10 * time.Minute)),
		ResendAfter:    timestamppb.New(now.Add(time.Minute)),
	}, nil
}

func (o *otp) VerifyCode(ctx context.Context, req *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	n, err := script.Run(ctx, o.rdb, []string{"floor:{v:" + req.GetRecipient() + "}"}, ttlMS).Int64()
	if err != nil {
		return nil, err
	}
	return &otpv1.VerifyCodeResponse{Result: otpv1.VerifyResult_VERIFY_RESULT_MISMATCH, AttemptsRemaining: int32(max(0, 100-n))}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:50061", "gRPC listen address")
	addr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	db := flag.Int("db", 0, "Redis database number")
	flag.Parse()
	if err := run(*listen, *addr, *db); err != nil {
		log.Fatal(err)
	}
}

// run serves on listen with Redis database db at addr until SIGINT or
// SIGTERM, then stops gracefully. It returns why it could not start or serve.
func run(listen, addr string, db int) error {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, DB: db})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		return fmt.Errorf("connect redis %s: %w", addr, err)
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, &health{rdb: rdb})
	otpv1.RegisterOtpServiceServer(gs, &otp{rdb: rdb})
	reflection.Register(gs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); gs.GracefulStop() }()
	log.Printf("baseline: serving on %s, redis %s db %d", lis.Addr(), addr, db)
	return gs.Serve(lis)
}
