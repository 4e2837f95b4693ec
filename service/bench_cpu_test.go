//go:build unix

package service_test

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU starts counting the process's CPU time (user and system, every
// goroutine) and returns the function that reports it per call as
// cpu-ns/op: otpd's own work without redis-server's, which runs in its own
// process, and far steadier than the wall time on a machine that runs
// other work too.
func reportCPU(b *testing.B) func() {
	b.Helper()
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
