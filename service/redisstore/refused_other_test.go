//go:build !unix

package redisstore_test

import (
	"net"
	"testing"
)

// refusedAddr is a loopback port nothing listens on: one a listener had
// and closed at once.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
