//go:build !pprof

package server

import "net/http"

// debugHandlers adds nothing: see pprof_on.go.
func debugHandlers(*http.ServeMux) {}
