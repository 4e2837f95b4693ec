package validate

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// renderedDir is where `make validate-deploy` writes `kustomize build` of
// each kustomization: base.yaml, and <overlay>.yaml for overlays/<overlay>.
func renderedDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OTPD_K8S_RENDERED")
	if dir == "" {
		t.Skip("OTPD_K8S_RENDERED is not set: run `make validate-deploy` from the repository root")
	}
	return dir
}

func readRendered(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(renderedDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustDecode(t *testing.T, data []byte) []Object {
	t.Helper()
	objs, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// layout is what each rendered kustomization must hold besides passing Check.
var layout = map[string]struct {
	sidecar bool
	want    []string // Kind/name
	notWant []string // kinds that must be absent
}{
	"base.yaml": {want: []string{
		"Deployment/otpd", "Service/otpd", "ServiceAccount/otpd", "Secret/otpd-secrets", "Secret/otpd-tls",
		"PodDisruptionBudget/otpd", "HorizontalPodAutoscaler/otpd", "NetworkPolicy/otpd", "ServiceMonitor/otpd",
	}},
	"dev.yaml": {want: []string{"Deployment/otpd", "Service/otpd", "Deployment/otpd-redis", "Service/otpd-redis"},
		notWant: []string{"PodDisruptionBudget", "HorizontalPodAutoscaler"}},
	"sidecar.yaml": {sidecar: true, want: []string{"Deployment/auth-server", "Secret/otpd-secrets"},
		notWant: []string{"Service", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor"}},
}

// TestRenderedManifests decodes every rendered kustomization strictly into
// the k8s.io/api types and runs Check on it. With OTPD_K8S_CONFIG_OUT set it
// also writes each otpd.yaml found in a ConfigMap there (k8s-otpd.yaml for
// the base, k8s-otpd-<overlay>.yaml for overlays) for `otpd -check`.
func TestRenderedManifests(t *testing.T) {
	dir := renderedDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range layout {
		if !slices.Contains(files, filepath.Join(dir, name)) {
			t.Errorf("%s was not rendered into %s", name, dir)
		}
	}
	out := os.Getenv("OTPD_K8S_CONFIG_OUT")
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			objs := mustDecode(t, readRendered(t, name))
			res := Check(objs)
			for _, p := range res.Problems {
				t.Error(p)
			}
			if len(res.Configs) == 0 {
				t.Fatal("no otpd container with a mounted otpd.yaml")
			}
			exp, known := layout[name]
			if !known {
				t.Logf("%s has no entry in layout: only the generic checks ran", name)
			}
			have := map[string]bool{}
			for _, o := range objs {
				have[o.String()], have[o.Kind] = true, true
			}
			for _, w := range exp.want {
				if !have[w] {
					t.Errorf("no %s", w)
				}
			}
			for _, k := range exp.notWant {
				if have[k] {
					t.Errorf("has a %s, which this layout must not have", k)
				}
			}
			for _, c := range res.Configs {
				if known && c.Sidecar != exp.sidecar {
					t.Errorf("%s container %s: sidecar = %v, want %v", c.Workload, c.Container, c.Sidecar, exp.sidecar)
				}
			}
			if out != "" {
				target := "k8s-otpd.yaml"
				if name != "base.yaml" {
					target = "k8s-otpd-" + name
				}
				if err := os.WriteFile(filepath.Join(out, target), []byte(res.Configs[0].Config.Text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestSidecarConfigMatchesBase: the sidecar's otpd.yaml is a copy of the
// base's that may differ only where a unix socket in the pod needs it.
func TestSidecarConfigMatchesBase(t *testing.T) {
	config := func(name string) map[string]any {
		res := Check(mustDecode(t, readRendered(t, name)))
		if len(res.Configs) != 1 {
			t.Fatalf("%s: %d otpd configurations, want 1", name, len(res.Configs))
		}
		tree := res.Configs[0].Config.Tree
		for _, k := range []string{"listen", "tls", "shutdown"} {
			delete(tree, k)
		}
		return tree
	}
	base, sidecar := config("base.yaml"), config("sidecar.yaml")
	for k := range mergeKeys(base, sidecar) {
		if !reflect.DeepEqual(base[k], sidecar[k]) {
			t.Errorf("otpd.yaml key %s differs between deploy/kubernetes/config and overlays/sidecar:\n base:    %v\n sidecar: %v", k, base[k], sidecar[k])
		}
	}
}

func mergeKeys(ms ...map[string]any) map[string]bool {
	keys := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			keys[k] = true
		}
	}
	return keys
}

func find[T any](t *testing.T, objs []Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.Value.(T); ok && o.Name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T %s", zero, name)
	return zero
}

func otpdIn(pod *corev1.PodSpec) *corev1.Container {
	for _, c := range allContainers(pod) {
		if c.Name == OtpdContainerName {
			return c
		}
	}
	return nil
}

// TestCheckRejects breaks one invariant at a time in the rendered manifests
// and expects Check to name it.
func TestCheckRejects(t *testing.T) {
	base := func(objs []Object) *corev1.Container {
		return otpdIn(&find[*appsv1.Deployment](t, objs, "otpd").Spec.Template.Spec)
	}
	tests := []struct {
		name   string
		file   string
		break_ func(objs []Object)
		want   string
	}{
		{"no cpu limit", "base.yaml", func(o []Object) { delete(base(o).Resources.Limits, corev1.ResourceCPU) }, "resources.limits.cpu is not set"},
		{"root allowed", "base.yaml", func(o []Object) {
			base(o).SecurityContext.RunAsNonRoot = nil
			find[*appsv1.Deployment](t, o, "otpd").Spec.Template.Spec.SecurityContext.RunAsNonRoot = ptr.To(false)
		}, "runAsNonRoot is not true"},
		{"writable root", "base.yaml", func(o []Object) { base(o).SecurityContext.ReadOnlyRootFilesystem = nil }, "readOnlyRootFilesystem is not true"},
		{"escalation", "base.yaml", func(o []Object) { base(o).SecurityContext.AllowPrivilegeEscalation = ptr.To(true) }, "allowPrivilegeEscalation is not false"},
		{"capabilities kept", "base.yaml", func(o []Object) { base(o).SecurityContext.Capabilities = nil }, "capabilities.drop does not contain ALL"},
		{"liveness on readyz", "base.yaml", func(o []Object) { base(o).LivenessProbe.HTTPGet.Path = "/readyz" }, `livenessProbe path "/readyz"`},
		{"readiness on grpc port", "base.yaml", func(o []Object) { base(o).ReadinessProbe.HTTPGet.Port = intstr.FromString("grpc") }, "readinessProbe port grpc"},
		{"no readiness", "base.yaml", func(o []Object) { base(o).ReadinessProbe = nil }, "no readinessProbe"},
		{"short grace period", "base.yaml", func(o []Object) {
			find[*appsv1.Deployment](t, o, "otpd").Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		}, "terminationGracePeriodSeconds 30 is not above preStop sleep 5s + shutdown.delay + shutdown.timeout 25s"},
		{"long drain in config", "base.yaml", func(o []Object) {
			for _, obj := range o {
				if cm, ok := obj.Value.(*corev1.ConfigMap); ok {
					cm.Data["otpd.yaml"] = strings.Replace(cm.Data["otpd.yaml"], "timeout: 20s", "timeout: 60s", 1)
				}
			}
		}, "terminationGracePeriodSeconds 45 is not above"},
		{"shell preStop", "base.yaml", func(o []Object) {
			base(o).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}
		}, "preStop exec [sleep 5]: the distroless image has no shell"},
		{"real secret", "base.yaml", func(o []Object) {
			find[*corev1.Secret](t, o, "otpd-secrets").StringData["OTPD_HMAC_KEY"] = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
		}, "Secret/otpd-secrets: stringData.OTPD_HMAC_KEY is not a placeholder"},
		{"missing env", "base.yaml", func(o []Object) { delete(find[*corev1.Secret](t, o, "otpd-secrets").StringData, "MAILGUN_API_KEY") }, "uses ${MAILGUN_API_KEY}"},
		{"service selector", "base.yaml", func(o []Object) {
			find[*corev1.Service](t, o, "otpd").Spec.Selector["app.kubernetes.io/component"] = "api"
		}, "Service/otpd: selector map[app.kubernetes.io/component:api app.kubernetes.io/name:otpd] matches no Deployment"},
		{"grpc without appProtocol", "base.yaml", func(o []Object) { find[*corev1.Service](t, o, "otpd").Spec.Ports[0].AppProtocol = nil }, "port grpc carries gRPC but appProtocol is not grpc"},
		{"grpc open to all", "base.yaml", func(o []Object) {
			find[*networkingv1.NetworkPolicy](t, o, "otpd").Spec.Ingress[0].From = nil
		}, "ingress[0] lets anyone reach otpd's gRPC port"},
		{"no dns egress", "base.yaml", func(o []Object) {
			find[*networkingv1.NetworkPolicy](t, o, "otpd").Spec.Egress[0].Ports = nil
		}, "egress does not allow 53/UDP"},
		{"pdb blocks drains", "base.yaml", func(o []Object) {
			find[*policyv1.PodDisruptionBudget](t, o, "otpd").Spec.MinAvailable = ptr.To(intstr.FromInt32(2))
		}, "minAvailable 2 with 2 replica(s)"},
		{"servicemonitor port", "base.yaml", func(o []Object) {
			find[*ServiceMonitor](t, o, "otpd").Spec.Endpoints[0].Port = "http"
		}, `endpoints[0].port "http" is not a port name of Service/otpd`},
		{"latest image", "base.yaml", func(o []Object) { base(o).Image = "ghcr.io/otpd/otpd:latest" }, "has no tag (or :latest)"},
		{"tls not mounted", "base.yaml", func(o []Object) { base(o).VolumeMounts = base(o).VolumeMounts[:1] }, "tls.cert_file /etc/otpd/tls/tls.crt is not in a mounted Secret"},
		{"missing configmap", "base.yaml", func(o []Object) {
			find[*appsv1.Deployment](t, o, "otpd").Spec.Template.Spec.Volumes[0].ConfigMap.Name = "otpd-config"
		}, `volume config: ConfigMap "otpd-config" is not in the manifests`},

		{"sidecar grpc port", "sidecar.yaml", func(o []Object) {
			side := otpdIn(&find[*appsv1.Deployment](t, o, "auth-server").Spec.Template.Spec)
			side.Ports = append(side.Ports, corev1.ContainerPort{Name: "grpc", ContainerPort: 50051})
		}, "exposes port grpc/50051 although otpd serves gRPC on a unix socket"},
		{"sidecar not native", "sidecar.yaml", func(o []Object) {
			otpdIn(&find[*appsv1.Deployment](t, o, "auth-server").Spec.Template.Spec).RestartPolicy = nil
		}, "needs restartPolicy: Always"},
		{"auth server without socket", "sidecar.yaml", func(o []Object) {
			find[*appsv1.Deployment](t, o, "auth-server").Spec.Template.Spec.Containers[0].VolumeMounts = nil
		}, "has OTPD_ADDR but does not mount otpd's socket volume otpd-socket"},
		{"auth server wrong address", "sidecar.yaml", func(o []Object) {
			find[*appsv1.Deployment](t, o, "auth-server").Spec.Template.Spec.Containers[0].Env[0].Value = "127.0.0.1:50051"
		}, `OTPD_ADDR is "127.0.0.1:50051", want "unix:///run/otpd/otpd.sock"`},
		{"sidecar on tcp", "sidecar.yaml", func(o []Object) {
			for _, obj := range o {
				if cm, ok := obj.Value.(*corev1.ConfigMap); ok {
					cm.Data["otpd.yaml"] = strings.Replace(cm.Data["otpd.yaml"], `"unix:///run/otpd/otpd.sock"`, `"0.0.0.0:50051"`, 1)
				}
			}
		}, `otpd sidecar listens on "0.0.0.0:50051", not on a unix socket`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustDecode(t, readRendered(t, tc.file))
			if res := Check(objs); len(res.Problems) != 0 {
				t.Fatalf("the unbroken %s already fails: %v", tc.file, res.Problems)
			}
			tc.break_(objs)
			res := Check(objs)
			if !slices.ContainsFunc(res.Problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("Check did not report %q; it reported:\n%s", tc.want, strings.Join(res.Problems, "\n"))
			}
		})
	}
}

// TestDecodeRejects: testdata/broken/*.yaml each start with "# want: TEXT",
// an error Decode must report.
func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/broken/*.yaml (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatal(`first line is not "# want: TEXT"`)
			}
			_, err = Decode(data)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Decode error = %v, want one containing %q", err, want)
			}
		})
	}
}
