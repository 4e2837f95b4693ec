//go:build unix

// Package benchcpu reports a benchmark's CPU time per op: the process's
// user and system time, every goroutine (client and server when both run
// in it), far steadier than the wall time on a machine that runs other
// work too.
package benchcpu

import (
	"syscall"
	"testing"
	"time"
)

// Report starts counting the process's CPU time and returns the function
// that reports it per op as cpu-ns/op.
func Report(b *testing.B) func() {
	b.Helper()
	start := processTime()
	return func() { b.ReportMetric(float64(processTime()-start)/float64(b.N), "cpu-ns/op") }
}

func processTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
