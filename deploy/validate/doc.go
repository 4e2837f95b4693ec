// Package validate checks otpd's deployment files offline: the rendered
// Kubernetes manifests (kustomize build of deploy/kubernetes), the Dockerfile,
// the Prometheus rules and the Grafana dashboard.
//
// It is its own module so that k8s.io/api and the Prometheus packages stay out
// of the service's go.mod. `make validate-deploy` renders every kustomization
// into bin/k8s and runs `go test ./...` here with OTPD_K8S_RENDERED pointing
// at it; see TestRenderedManifests.
package validate
