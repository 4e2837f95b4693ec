// Package errtest checks the keyed validation errors every configuration
// block reports ("code.length: must be between 4 and 10"), one per line of
// a joined error.
package errtest

import (
	"strings"
	"testing"
)

// WantPrefixes fails unless err has exactly one line per entry of want, in
// order, each starting with its entry; an empty want means err must be nil.
func WantPrefixes(tb testing.TB, err error, want []string) {
	tb.Helper()
	if len(want) == 0 {
		if err != nil {
			tb.Fatalf("Validate: %v", err)
		}
		return
	}
	if err == nil {
		tb.Fatalf("Validate succeeded, want %q", want)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		tb.Fatalf("%d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			tb.Errorf("error %d = %q, want it to start %q", i, lines[i], w)
		}
	}
}

// WantKeys fails unless err has exactly one line per key, in any order,
// each starting with "<key>: "; no keys means err must be nil.
func WantKeys(tb testing.TB, err error, keys []string) {
	tb.Helper()
	if len(keys) == 0 {
		if err != nil {
			tb.Fatalf("Validate: %v", err)
		}
		return
	}
	if err == nil {
		tb.Fatalf("Validate succeeded, want errors on %q", keys)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(keys) {
		tb.Errorf("%d errors, want %d:\n%v", len(lines), len(keys), err)
	}
	for _, key := range keys {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, key+": ")
		}
		if !found {
			tb.Errorf("no error names %s:\n%v", key, err)
		}
	}
}
