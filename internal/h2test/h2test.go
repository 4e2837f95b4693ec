// Package h2test speaks just enough HTTP/2 by hand for tests that open
// thousands of gRPC connections: one grpc.health.v1 Check per connection,
// without a gRPC client's goroutines and buffers.
package h2test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HealthCheck dials addr (host:port, or unix:///path) with d and makes one
// grpc.health.v1 Check by hand (HTTP/2 preface, SETTINGS, HEADERS, DATA).
// It returns the open connection once the check answered OK, or an error if
// the server answered otherwise or closed it first.
func HealthCheck(d net.Dialer, addr string) (net.Conn, error) {
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		network, addr = "unix", path
	}
	if d.Timeout == 0 {
		d.Timeout = 10 * time.Second
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		return nil, err
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		return nil, err
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.health.v1.Health/Check"},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		return nil, err
	}
	// An empty HealthCheckRequest: no compression, length 0.
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
		return nil, err
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return nil, err
				}
			}
		case *http2.MetaHeadersFrame:
			if !f.StreamEnded() {
				continue
			}
			st := "none"
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					st = hf.Value
				}
			}
			if st != "0" {
				return nil, fmt.Errorf("health check answered grpc-status %s", st)
			}
			_ = c.SetDeadline(time.Time{})
			ok = true
			return c, nil
		case *http2.GoAwayFrame:
			return nil, errors.New("server sent GOAWAY")
		}
	}
}
