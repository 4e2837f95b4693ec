//go:build pprof

package server

import (
	"net/http"
	"net/http/pprof"
)

// A binary built with -tags pprof (make load with LOAD_PROFILE=1) serves Go's
// profiles under /debug/pprof/ on the admin port. Release builds do not:
// the admin port is often reachable by the whole cluster.
func debugHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
