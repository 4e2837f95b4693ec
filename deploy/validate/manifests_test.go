package validate

import (
	"errors"
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
	"sigs.k8s.io/yaml"
)

// fromMake returns a variable that `make validate-deploy` sets: OTPD_BIN
// (bin/otpd, built from this repository) or OTPD_K8S_RENDERED (bin/k8s, with
// `kustomize build` of each kustomization: base.yaml, and <overlay>.yaml for
// overlays/<overlay>).
func fromMake(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run `make validate-deploy` from the repository root", name)
	}
	return v
}

// otpdBin is the real otpd -print-config.
func otpdBin(t testing.TB) OtpdFunc {
	t.Helper()
	return ExecOtpd(fromMake(t, "OTPD_BIN"))
}

func readRendered(t testing.TB, name string) []Object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fromMake(t, "OTPD_K8S_RENDERED"), name))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// protection are the objects the base layout must keep: without them otpd
// runs open to the cluster, unscraped, or unprotected against drains and
// load, and no check of the remaining objects would notice.
var protection = []string{"NetworkPolicy/otpd", "ServiceMonitor/otpd", "PodDisruptionBudget/otpd", "HorizontalPodAutoscaler/otpd"}

// TestRenderedManifests decodes every rendered kustomization strictly into
// the k8s.io/api types and runs Check on it with the real otpd. With
// OTPD_K8S_CONFIG_OUT set it also writes each layout's otpd.yaml there
// (k8s-otpd.yaml for the base, k8s-otpd-<overlay>.yaml for overlays).
func TestRenderedManifests(t *testing.T) {
	otpd := otpdBin(t)
	files, err := filepath.Glob(filepath.Join(fromMake(t, "OTPD_K8S_RENDERED"), "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rendered kustomizations (%v)", err)
	}
	out := os.Getenv("OTPD_K8S_CONFIG_OUT")
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			t.Parallel()
			objs := readRendered(t, name)
			res := Check(objs, otpd)
			for _, p := range res.Problems {
				t.Error(p)
			}
			if len(res.Configs) == 0 {
				t.Fatal("no otpd container runs with an otpd.yaml that otpd accepts")
			}
			if name == "base.yaml" {
				for _, w := range protection {
					if !slices.ContainsFunc(objs, func(o Object) bool { return o.String() == w }) {
						t.Errorf("no %s", w)
					}
				}
			}
			if out != "" {
				target := "k8s-otpd.yaml"
				if name != "base.yaml" {
					target = "k8s-otpd-" + name
				}
				if err := os.WriteFile(filepath.Join(out, target), []byte(res.Configs[0].Text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestSidecarConfigMatchesBase: the sidecar's otpd.yaml is a copy of the
// base's that may differ only where a unix socket in the pod needs it. The
// files are compared, not otpd's effective configurations, so that the
// providers' config blocks (which -print-config leaves out) count too.
func TestSidecarConfigMatchesBase(t *testing.T) {
	t.Parallel()
	otpd := otpdBin(t)
	config := func(name string) map[string]any {
		res := Check(readRendered(t, name), otpd)
		if len(res.Configs) != 1 {
			t.Fatalf("%s: %d otpd configurations, want 1", name, len(res.Configs))
		}
		var tree map[string]any
		if err := yaml.Unmarshal([]byte(res.Configs[0].Text), &tree); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"listen", "tls", "shutdown"} {
			delete(tree, k)
		}
		return tree
	}
	base, sidecar := config("base.yaml"), config("sidecar.yaml")
	for k := range base {
		if _, ok := sidecar[k]; !ok {
			sidecar[k] = nil
		}
	}
	for k := range sidecar {
		if !reflect.DeepEqual(base[k], sidecar[k]) {
			t.Errorf("otpd.yaml key %s differs between deploy/kubernetes/config and overlays/sidecar:\n base:    %v\n sidecar: %v", k, base[k], sidecar[k])
		}
	}
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

// editConfig replaces old by repl in the first otpd.yaml of objs that holds it.
func editConfig(t *testing.T, objs []Object, old, repl string) {
	t.Helper()
	for _, obj := range objs {
		if cm, ok := obj.Value.(*corev1.ConfigMap); ok && strings.Contains(cm.Data["otpd.yaml"], old) {
			cm.Data["otpd.yaml"] = strings.Replace(cm.Data["otpd.yaml"], old, repl, 1)
			return
		}
	}
	t.Fatalf("no otpd.yaml contains %q", old)
}

// TestCheckRejects breaks one invariant at a time in the rendered manifests
// and expects Check, with the real otpd, to name it.
func TestCheckRejects(t *testing.T) {
	otpd := otpdBin(t)
	base := func(objs []Object) *corev1.Container {
		return otpdIn(&find[*appsv1.Deployment](t, objs, "otpd").Spec.Template.Spec)
	}
	sidecarPod := func(objs []Object) *corev1.PodSpec {
		return &find[*appsv1.Deployment](t, objs, "auth-server").Spec.Template.Spec
	}
	tests := []struct {
		name    string
		file    string
		breakIt func(objs []Object)
		want    string
		otpd    OtpdFunc // instead of the real one
	}{
		{name: "no cpu limit", file: "base.yaml", breakIt: func(o []Object) { delete(base(o).Resources.Limits, corev1.ResourceCPU) },
			want: "resources.limits.cpu is not set"},
		{name: "root allowed", file: "base.yaml", breakIt: func(o []Object) {
			base(o).SecurityContext.RunAsNonRoot = nil
			find[*appsv1.Deployment](t, o, "otpd").Spec.Template.Spec.SecurityContext.RunAsNonRoot = ptr.To(false)
		}, want: "runAsNonRoot is not true"},
		{name: "writable root", file: "base.yaml", breakIt: func(o []Object) { base(o).SecurityContext.ReadOnlyRootFilesystem = nil },
			want: "readOnlyRootFilesystem is not true"},
		{name: "escalation", file: "base.yaml", breakIt: func(o []Object) { base(o).SecurityContext.AllowPrivilegeEscalation = ptr.To(true) },
			want: "allowPrivilegeEscalation is not false"},
		{name: "capability added", file: "base.yaml", breakIt: func(o []Object) {
			base(o).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, want: "capabilities does not drop ALL and add none"},
		{name: "latest image", file: "base.yaml", breakIt: func(o []Object) { base(o).Image = "ghcr.io/otpd/otpd:latest" },
			want: "has no tag (or :latest)"},
		{name: "missing configmap", file: "base.yaml", breakIt: func(o []Object) {
			find[*appsv1.Deployment](t, o, "otpd").Spec.Template.Spec.Volumes[0].ConfigMap.Name = "otpd-config"
		}, want: `volume config: ConfigMap "otpd-config" is not in the manifests`},
		{name: "real secret", file: "base.yaml", breakIt: func(o []Object) {
			find[*corev1.Secret](t, o, "otpd-secrets").StringData["OTPD_HMAC_KEY"] = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
		}, want: "Secret/otpd-secrets: stringData.OTPD_HMAC_KEY is not a placeholder"},

		// otpd's configuration, as otpd reads it in the container.
		{name: "dev mode", file: "base.yaml", breakIt: func(o []Object) { base(o).Args = nil },
			want: "no -config argument: otpd would start in dev mode"},
		{name: "env not provided", file: "base.yaml", breakIt: func(o []Object) {
			delete(find[*corev1.Secret](t, o, "otpd-secrets").StringData, "MAILGUN_API_KEY")
		}, want: "container otpd: otpd.yaml providers[2].config.apiKey uses ${MAILGUN_API_KEY}, which the container's env and envFrom do not provide"},
		{name: "env empty", file: "base.yaml", breakIt: func(o []Object) {
			base(o).Env = append(base(o).Env, corev1.EnvVar{Name: "REDIS_URL"})
		}, want: "otpd.yaml redis.url uses ${REDIS_URL}, which is empty in the container's environment"},
		{name: "config otpd rejects", file: "base.yaml", breakIt: func(o []Object) { editConfig(t, o, "length: 6", "length: 3") },
			want: "otpd rejects otpd.yaml of ConfigMap otpd-config-"},
		{name: "otpd fails", file: "base.yaml", breakIt: func([]Object) {}, want: "otpd: boom",
			otpd: func(string, []string, map[string]string) (*OtpdConfig, error) { return nil, errors.New("otpd: boom") }},
		{name: "admin port moved in otpd.yaml only", file: "base.yaml", breakIt: func(o []Object) {
			editConfig(t, o, `http: "0.0.0.0:9464"`, `http: "0.0.0.0:9465"`)
		}, want: "readinessProbe port metrics is not listen.http's 9465"},
		{name: "admin HTTP on loopback by flag", file: "base.yaml", breakIt: func(o []Object) {
			base(o).Args = append(base(o).Args, "-listen-http=127.0.0.1:9464")
		}, want: `listen.http "127.0.0.1:9464" is not reachable on the pod IP`},
		{name: "grpc port moved in otpd.yaml only", file: "base.yaml", breakIt: func(o []Object) {
			editConfig(t, o, `grpc: "0.0.0.0:50051"`, `grpc: "0.0.0.0:50052"`)
		}, want: "no container port named grpc on 50052 (listen.grpc)"},
		{name: "liveness on readyz", file: "base.yaml", breakIt: func(o []Object) { base(o).LivenessProbe.HTTPGet.Path = "/readyz" },
			want: `livenessProbe path "/readyz"`},
		{name: "readiness on grpc port", file: "base.yaml", breakIt: func(o []Object) {
			base(o).ReadinessProbe.HTTPGet.Port = intstr.FromString("grpc")
		}, want: "readinessProbe port grpc"},
		{name: "no readiness", file: "base.yaml", breakIt: func(o []Object) { base(o).ReadinessProbe = nil }, want: "no readinessProbe"},
		{name: "tls not mounted", file: "base.yaml", breakIt: func(o []Object) { base(o).VolumeMounts = base(o).VolumeMounts[:1] },
			want: "tls.cert_file /etc/otpd/tls/tls.crt is not in a mounted Secret"},
		{name: "short grace period", file: "base.yaml", breakIt: func(o []Object) {
			find[*appsv1.Deployment](t, o, "otpd").Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		}, want: "terminationGracePeriodSeconds 30 is not above preStop sleep 5s + shutdown.delay + shutdown.timeout 25s"},
		{name: "long drain in otpd.yaml", file: "base.yaml", breakIt: func(o []Object) { editConfig(t, o, "timeout: 20s", "timeout: 60s") },
			want: "terminationGracePeriodSeconds 45 is not above"},
		{name: "shell preStop", file: "base.yaml", breakIt: func(o []Object) {
			base(o).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}
		}, want: "preStop exec [sleep 5]: the distroless image has no shell"},

		// Objects that select otpd's pods.
		{name: "service selector", file: "base.yaml", breakIt: func(o []Object) {
			find[*corev1.Service](t, o, "otpd").Spec.Selector["app.kubernetes.io/component"] = "api"
		}, want: "Service/otpd: selector map[app.kubernetes.io/component:api app.kubernetes.io/name:otpd] matches no Deployment"},
		{name: "grpc open to all", file: "base.yaml", breakIt: func(o []Object) {
			find[*networkingv1.NetworkPolicy](t, o, "otpd").Spec.Ingress[0].From = nil
		}, want: "ingress[0] lets anyone reach otpd's gRPC port"},
		{name: "no dns egress", file: "base.yaml", breakIt: func(o []Object) {
			find[*networkingv1.NetworkPolicy](t, o, "otpd").Spec.Egress[0].Ports = nil
		}, want: "egress does not allow 53/UDP"},
		{name: "pdb blocks drains", file: "base.yaml", breakIt: func(o []Object) {
			find[*policyv1.PodDisruptionBudget](t, o, "otpd").Spec.MinAvailable = ptr.To(intstr.FromInt32(2))
		}, want: "minAvailable 2 with 2 replica(s)"},
		{name: "servicemonitor port", file: "base.yaml", breakIt: func(o []Object) {
			find[*ServiceMonitor](t, o, "otpd").Spec.Endpoints[0].Port = "http"
		}, want: `endpoints[0].port "http" is not a port name of Service/otpd`},

		// The native sidecar and its unix socket.
		{name: "sidecar not native", file: "sidecar.yaml", breakIt: func(o []Object) { otpdIn(sidecarPod(o)).RestartPolicy = nil },
			want: "needs restartPolicy: Always"},
		{name: "socket not in an emptyDir", file: "sidecar.yaml", breakIt: func(o []Object) {
			otpdIn(sidecarPod(o)).VolumeMounts[0].MountPath = "/run/other"
		}, want: "listen.grpc unix:///run/otpd/otpd.sock: /run/otpd is not an emptyDir mounted in otpd"},
		{name: "auth server without socket", file: "sidecar.yaml", breakIt: func(o []Object) { sidecarPod(o).Containers[0].VolumeMounts = nil },
			want: "has OTPD_ADDR but does not mount otpd's socket volume otpd-socket"},
		{name: "auth server wrong address", file: "sidecar.yaml", breakIt: func(o []Object) {
			sidecarPod(o).Containers[0].Env[0].Value = "127.0.0.1:50051"
		}, want: `OTPD_ADDR is "127.0.0.1:50051", want "unix:///run/otpd/otpd.sock"`},
		{name: "sidecar on tcp", file: "sidecar.yaml", breakIt: func(o []Object) {
			editConfig(t, o, `"unix:///run/otpd/otpd.sock"`, `"0.0.0.0:50051"`)
		}, want: `otpd sidecar listens on "0.0.0.0:50051", not on a unix socket`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := readRendered(t, tc.file)
			if res := Check(objs, otpd); len(res.Problems) != 0 {
				t.Fatalf("the unbroken %s already fails: %v", tc.file, res.Problems)
			}
			tc.breakIt(objs)
			fn := otpd
			if tc.otpd != nil {
				fn = tc.otpd
			}
			res := Check(objs, fn)
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
