// Package validate checks otpd's deployment files offline: the rendered
// Kubernetes manifests (kustomize build of deploy/kubernetes), the Dockerfile,
// the Prometheus rules and the Grafana dashboard.
//
// What otpd makes of the otpd.yaml each otpd container mounts (defaults,
// ${NAME} from the container's environment, validation) is asked of otpd
// itself, `otpd -config FILE -print-config`, so this package keeps no copy of
// otpd's defaults or rules.
//
// It is its own module so that k8s.io/api and the Prometheus packages stay out
// of the service's go.mod. `make validate-deploy` builds bin/otpd, renders
// every kustomization into bin/k8s and runs `go test ./...` here with
// OTPD_BIN and OTPD_K8S_RENDERED pointing at them; see TestRenderedManifests.
package validate
