package aliyundm

import "net/http"

// Transport returns the HTTP transport p's sends share, so that a test can
// make it trust an httptest TLS server.
func Transport(p *Provider) *http.Transport { return p.transport }
