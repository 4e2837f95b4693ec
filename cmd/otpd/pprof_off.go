//go:build !pprof

package main

import "net/http"

// debugHandlers adds nothing: see pprof_on.go.
func debugHandlers(*http.ServeMux) {}
