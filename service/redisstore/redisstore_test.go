package redisstore_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/redisstore"
	"github.com/otpd/otpd/service/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	storetest.Run(t, func(tb testing.TB) service.Store {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
		tb.Cleanup(func() { _ = rdb.Close() })
		return redisstore.New(rdb, "")
	})
}
