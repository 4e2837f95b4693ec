package service_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

// BenchmarkRedisCPU is what a call costs Redis: redis-server's own CPU time
// (INFO cpu) per SendCode and per wrong VerifyCode, one call at a time, with
// every limit and fraud rule of the ghz load's configuration
// (deploy/ghz/otpd-load.yaml) on and a client IP per call. Redis is the
// part of a call's cost that ghz can only report as a total; this tells the
// scripts' share apart (redis-us/op), steadier than RPS on a shared
// machine. The figures include the network reads and writes of one call,
// which pipelining shares out under load.
func BenchmarkRedisCPU(b *testing.B) {
	loadConfig := func(c *service.Config) {
		c.Code.MaxAttempts = 100
		c.Limits.PerCountry = service.Window{Count: 1000000000, Window: time.Hour}
		c.Limits.VerifyPerRecipient = service.Window{Count: 1000000000, Window: time.Hour}
		c.Fraud.SMSCountries.Deny = []string{"001"}
		c.Fraud.Conversion = service.Conversion{Window: 24 * time.Hour, MinUnverified: 1000000000, Ratio: 0.2}
	}
	ctx := context.Background()
	b.Run("SendCode", func(b *testing.B) {
		h := newHarnessOn(b, nil, loadConfig)
		h.logs.discard = true
		defer redistest.ReportCPU(b, h.rdb)()
		for i := 0; b.Loop(); i++ {
			to := "+1415" + strconv.Itoa(2000000+i)
			if _, err := h.svc.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: clientIP(i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("VerifyCode", func(b *testing.B) {
		h := newHarnessOn(b, nil, loadConfig)
		h.logs.discard = true
		const recipients = 2000
		numbers := make([]string, recipients)
		for i := range numbers {
			numbers[i] = "+1415" + strconv.Itoa(2000000+i)
			if _, err := h.svc.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: numbers[i], UsageType: signIn}); err != nil {
				b.Fatal(err)
			}
		}
		defer redistest.ReportCPU(b, h.rdb)()
		for i := 0; b.Loop(); i++ {
			if _, err := h.svc.VerifyCode(ctx, &otpv1.VerifyCodeRequest{
				Recipient: numbers[i%recipients], UsageType: signIn, Code: "000000", ClientIp: clientIP(1<<20 + i),
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
