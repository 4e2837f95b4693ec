package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/benchcpu"
)

// countingWriter records each write it is given.
type countingWriter struct {
	gate   chan struct{} // when set, the first write waits until it is closed
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.gate != nil {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) read() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

// Lines logged while a write is under way leave together in the next
// one, in order; Close writes out the rest and lets later lines through.
func TestLogBuffer(t *testing.T) {
	out := &countingWriter{gate: make(chan struct{})}
	b := newLogBuffer(out)
	var want strings.Builder
	for i := range 100 {
		line := strings.Repeat("x", i) + "\n"
		want.WriteString(line)
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	close(out.gate) // the first write, under way, ends
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, writes := out.read()
		if got == want.String() {
			if writes > 2 {
				t.Errorf("100 lines in %d writes, want at most 2 (the first line, then those that waited)", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines never written out: got %d bytes, want %d", len(got), want.Len())
		}
		time.Sleep(time.Millisecond)
	}
	_, _ = b.Write([]byte("before close\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = b.Write([]byte("after close\n"))
	if got, _ := out.read(); got != want.String()+"before close\nafter close\n" {
		t.Errorf("after Close: %q", got[len(want.String()):])
	}
}

// Concurrent writers lose no line and never interleave two lines.
func TestLogBufferConcurrent(t *testing.T) {
	out := &countingWriter{}
	b := newLogBuffer(out)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				_, _ = b.Write([]byte(strings.Repeat(string(rune('a'+g)), 1+i%50) + "\n"))
			}
		})
	}
	wg.Wait()
	_ = b.Close()
	got, _ := out.read()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	for _, l := range lines {
		if strings.Trim(l, l[:1]) != "" {
			t.Fatalf("a line mixes writers: %q", l)
		}
	}
}

// BenchmarkLogLine is one info line, as a call logs it, from 50 goroutines
// at once, to a pipe that another goroutine drains (as a container
// runtime reads otpd's stderr): written directly, each line its own
// system call, and through logBuffer.
func BenchmarkLogLine(b *testing.B) {
	for _, buffered := range []bool{false, true} {
		name := "direct"
		if buffered {
			name = "logBuffer"
		}
		b.Run(name, func(b *testing.B) {
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			drained := make(chan struct{})
			go func() { _, _ = io.Copy(io.Discard, r); close(drained) }()
			var out io.Writer = w
			var buf *logBuffer
			if buffered {
				buf = newLogBuffer(w)
				out = buf
			}
			log := slog.New(slog.NewJSONHandler(out, nil))
			b.ReportAllocs()
			b.SetParallelism(25)
			b.ResetTimer()
			defer benchcpu.Report(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					log.Info("code verified", "recipient", "+14******123", "usage_type", "sign_in", "result", "mismatch", "attempts_remaining", 4)
				}
			})
			b.StopTimer()
			if buf != nil {
				_ = buf.Close()
			}
			_ = w.Close()
			<-drained
		})
	}
}
