package main

import (
	"io"
	"sync"
)

// logBuffer writes otpd's log lines from a goroutine of its own: a call
// that logs appends its line and goes on, and the lines that arrive while
// a write is under way leave together in the next one. Under load one
// write system call then carries tens of lines instead of one each (a
// write to a pipe costs a few µs of CPU, about as much as formatting the
// line); a lone line still leaves at once. At most logBatchMax bytes
// wait: past that a caller waits for the writer, as it waited for its own
// write before. Close writes out what is left; otpd calls it on every
// way out of run, so nothing logged before exit is lost, short of the
// process being killed.
type logBuffer struct {
	out  io.Writer
	wake chan struct{} // capacity 1: lines are waiting
	done chan struct{} // closed when the writer has stopped

	mu      sync.Mutex
	room    *sync.Cond // signalled when the writer takes a batch
	buf     []byte     // lines not yet taken by the writer
	spare   []byte     // the writer's last batch, reused
	closing bool       // no more wake-ups: Close writes what is left
	closed  bool       // what was left is written: write through
}

const logBatchMax = 1 << 20

func newLogBuffer(out io.Writer) *logBuffer {
	b := &logBuffer{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.room = sync.NewCond(&b.mu)
	go b.writer()
	return b
}

// Write queues p for the writer.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.out.Write(p)
	}
	for len(b.buf) >= logBatchMax && !b.closing {
		b.room.Wait()
	}
	b.buf = append(b.buf, p...)
	if !b.closing {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// writer writes out the waiting lines, a batch at a time, until Close.
func (b *logBuffer) writer() {
	defer close(b.done)
	for range b.wake {
		b.mu.Lock()
		batch := b.buf
		b.buf, b.spare = b.spare[:0], nil
		b.room.Broadcast()
		b.mu.Unlock()
		if len(batch) > 0 {
			_, _ = b.out.Write(batch)
		}
		b.mu.Lock()
		if cap(batch) <= logBatchMax {
			b.spare = batch[:0]
		}
		b.mu.Unlock()
	}
}

// Close writes out what waits and stops the writer; later writes go
// straight through, in order.
func (b *logBuffer) Close() error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return nil
	}
	b.closing = true
	close(b.wake)
	b.room.Broadcast()
	b.mu.Unlock()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.out.Write(b.buf)
	b.buf = nil
	return err
}
