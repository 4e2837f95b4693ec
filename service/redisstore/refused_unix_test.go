//go:build unix

package redisstore_test

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// refusedAddr is a loopback address that refuses connections and stays
// so for the whole test: a TCP socket bound to it but not listening holds
// the port, so that no other process can take it meanwhile (a listener
// closed at once would free it).
func refusedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
