package validate

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Placeholder is what every value of a committed Secret must contain.
const Placeholder = "REPLACE_ME"

// OtpdContainerName is how the checks recognise otpd in a pod.
const OtpdContainerName = "otpd"

// defaultGracePeriod is Kubernetes' terminationGracePeriodSeconds default.
const defaultGracePeriod = 30

// Result is what Check found in one manifest stream.
type Result struct {
	// Problems are the broken invariants, each naming its object.
	Problems []string
	// Configs are the otpd.yaml files mounted into otpd containers.
	Configs []MountedConfig
}

// MountedConfig is the otpd.yaml one otpd container runs with.
type MountedConfig struct {
	Workload  string // "Deployment/otpd"
	Container string
	Sidecar   bool // a native sidecar (init container, restartPolicy Always)
	Path      string
	Config    *OtpdConfig
}

type checker struct {
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	netpols     []*networkingv1.NetworkPolicy
	monitors    []*ServiceMonitor
	res         Result
}

func (c *checker) errorf(where, format string, args ...any) {
	c.res.Problems = append(c.res.Problems, where+": "+fmt.Sprintf(format, args...))
}

// Check verifies the invariants of a rendered manifest stream that its
// schema cannot express: hardened and bounded containers, otpd's probes,
// ports, configuration and shutdown budget, references between objects,
// placeholder-only Secrets, and (for a native otpd sidecar) a unix socket
// shared with the auth server instead of a network port.
func Check(objs []Object) Result {
	c := &checker{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			c.configMaps[v.Name] = v
		case *corev1.Secret:
			c.secrets[v.Name] = v
		case *appsv1.Deployment:
			c.deployments = append(c.deployments, v)
		case *corev1.Service:
			c.services = append(c.services, v)
		case *policyv1.PodDisruptionBudget:
			c.pdbs = append(c.pdbs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			c.hpas = append(c.hpas, v)
		case *networkingv1.NetworkPolicy:
			c.netpols = append(c.netpols, v)
		case *ServiceMonitor:
			c.monitors = append(c.monitors, v)
		}
	}
	for _, s := range c.secrets {
		c.checkSecret(s)
	}
	for _, d := range c.deployments {
		c.checkDeployment(d)
	}
	for _, s := range c.services {
		c.checkService(s)
	}
	for _, p := range c.pdbs {
		c.checkPDB(p)
	}
	for _, h := range c.hpas {
		c.checkHPA(h)
	}
	for _, n := range c.netpols {
		c.checkNetworkPolicy(n)
	}
	for _, m := range c.monitors {
		c.checkServiceMonitor(m)
	}
	return c.res
}

// ---- Secrets ----

func (c *checker) checkSecret(s *corev1.Secret) {
	where := "Secret/" + s.Name
	for k, v := range s.StringData {
		if !strings.Contains(v, Placeholder) {
			c.errorf(where, "stringData.%s is not a placeholder: committed Secrets hold %q values only", k, Placeholder)
		}
	}
	for k, v := range s.Data {
		if !strings.Contains(string(v), Placeholder) {
			c.errorf(where, "data.%s is not a placeholder: committed Secrets hold %q values only", k, Placeholder)
		}
	}
}

// secretKeys are the keys a Secret defines.
func secretKeys(s *corev1.Secret) map[string]bool {
	keys := map[string]bool{}
	for k := range s.StringData {
		keys[k] = true
	}
	for k := range s.Data {
		keys[k] = true
	}
	return keys
}

func configMapKeys(cm *corev1.ConfigMap) map[string]bool {
	keys := map[string]bool{}
	for k := range cm.Data {
		keys[k] = true
	}
	for k := range cm.BinaryData {
		keys[k] = true
	}
	return keys
}

// ---- Deployments and their pods ----

func (c *checker) checkDeployment(d *appsv1.Deployment) {
	where := "Deployment/" + d.Name
	spec := &d.Spec.Template.Spec
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels)+len(d.Spec.Selector.MatchExpressions) == 0 {
		c.errorf(where, "spec.selector is empty")
	} else if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil {
		c.errorf(where, "spec.selector: %v", err)
	} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		c.errorf(where, "spec.selector %v does not match the pod template's labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		volumes[v.Name] = v
		c.checkVolume(where, v)
	}
	for i := range spec.InitContainers {
		ctr := &spec.InitContainers[i]
		c.checkContainer(where, spec, ctr, volumes)
		if ctr.Name == OtpdContainerName {
			sidecar := ctr.RestartPolicy != nil && *ctr.RestartPolicy == corev1.ContainerRestartPolicyAlways
			if !sidecar {
				c.errorf(where, "init container otpd needs restartPolicy: Always (a native sidecar); a plain init container never finishes and blocks the pod")
			}
			c.checkOtpd(where, spec, ctr, volumes, true)
		}
	}
	for i := range spec.Containers {
		ctr := &spec.Containers[i]
		c.checkContainer(where, spec, ctr, volumes)
		if ctr.Name == OtpdContainerName {
			c.checkOtpd(where, spec, ctr, volumes, false)
		}
	}
}

func (c *checker) checkVolume(where string, v *corev1.Volume) {
	switch {
	case v.ConfigMap != nil:
		var keys map[string]bool
		if cm, ok := c.configMaps[v.ConfigMap.Name]; ok {
			keys = configMapKeys(cm)
		}
		c.checkVolumeSource(where, v.Name, "ConfigMap", v.ConfigMap.Name, keys, v.ConfigMap.Optional, v.ConfigMap.Items)
	case v.Secret != nil:
		var keys map[string]bool
		if s, ok := c.secrets[v.Secret.SecretName]; ok {
			keys = secretKeys(s)
		}
		c.checkVolumeSource(where, v.Name, "Secret", v.Secret.SecretName, keys, v.Secret.Optional, v.Secret.Items)
	}
}

// checkVolumeSource checks that a volume's ConfigMap or Secret (kind, name)
// is in the manifests, unless optional, and has the keys the volume
// projects. keys is nil when the object is missing.
func (c *checker) checkVolumeSource(where, volume, kind, name string, keys map[string]bool, optional *bool, items []corev1.KeyToPath) {
	if keys == nil {
		if optional == nil || !*optional {
			c.errorf(where, "volume %s: %s %q is not in the manifests", volume, kind, name)
		}
		return
	}
	for _, it := range items {
		if !keys[it.Key] {
			c.errorf(where, "volume %s: %s %q has no key %q", volume, kind, name, it.Key)
		}
	}
}

func (c *checker) checkContainer(where string, pod *corev1.PodSpec, ctr *corev1.Container, volumes map[string]*corev1.Volume) {
	where = fmt.Sprintf("%s container %s", where, ctr.Name)

	// Bounded: requests and limits for CPU and memory, requests <= limits.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := ctr.Resources.Requests[r]
		lim, hasLim := ctr.Resources.Limits[r]
		switch {
		case !hasReq || req.IsZero():
			c.errorf(where, "resources.requests.%s is not set", r)
		case !hasLim || lim.IsZero():
			c.errorf(where, "resources.limits.%s is not set", r)
		case req.Cmp(lim) > 0:
			c.errorf(where, "resources.requests.%s %s is above the limit %s", r, req.String(), lim.String())
		}
	}

	// Hardened: non-root, read-only root, no escalation, no capabilities, seccomp.
	sc := ctr.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		c.errorf(where, "securityContext.runAsNonRoot is not true (neither on the container nor on the pod)")
	}
	if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (sc.RunAsUser == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		c.errorf(where, "runs as user 0")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.errorf(where, "securityContext.readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.errorf(where, "securityContext.allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		c.errorf(where, "securityContext.privileged is true")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.errorf(where, "securityContext.capabilities.drop does not contain ALL")
	} else if len(sc.Capabilities.Add) > 0 {
		c.errorf(where, "securityContext.capabilities.add %v: otpd's pods need none", sc.Capabilities.Add)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		c.errorf(where, "seccompProfile is not RuntimeDefault (neither on the container nor on the pod)")
	}

	// A pinned image: a tag other than latest, or a digest.
	if !strings.Contains(ctr.Image, "@") {
		name, tag := ctr.Image, ""
		if i := strings.LastIndex(ctr.Image, ":"); i > strings.LastIndex(ctr.Image, "/") {
			name, tag = ctr.Image[:i], ctr.Image[i+1:]
		}
		if tag == "" || tag == "latest" {
			c.errorf(where, "image %q has no tag (or :latest): pin a version (kustomize images:)", name)
		}
	}

	// References: volumes, Secrets, ConfigMaps, named ports.
	for _, m := range ctr.VolumeMounts {
		if volumes[m.Name] == nil {
			c.errorf(where, "volumeMount %s: no such volume in the pod", m.Name)
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Optional == nil || !*r.Optional) {
			if s, ok := c.secrets[r.Name]; !ok {
				c.errorf(where, "env %s: Secret %q is not in the manifests", e.Name, r.Name)
			} else if !secretKeys(s)[r.Key] {
				c.errorf(where, "env %s: Secret %q has no key %q", e.Name, r.Name, r.Key)
			}
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil && (r.Optional == nil || !*r.Optional) {
			if cm, ok := c.configMaps[r.Name]; !ok {
				c.errorf(where, "env %s: ConfigMap %q is not in the manifests", e.Name, r.Name)
			} else if !configMapKeys(cm)[r.Key] {
				c.errorf(where, "env %s: ConfigMap %q has no key %q", e.Name, r.Name, r.Key)
			}
		}
	}
	for _, e := range ctr.EnvFrom {
		if r := e.SecretRef; r != nil && (r.Optional == nil || !*r.Optional) && c.secrets[r.Name] == nil {
			c.errorf(where, "envFrom: Secret %q is not in the manifests", r.Name)
		}
		if r := e.ConfigMapRef; r != nil && (r.Optional == nil || !*r.Optional) && c.configMaps[r.Name] == nil {
			c.errorf(where, "envFrom: ConfigMap %q is not in the manifests", r.Name)
		}
	}
	for name, p := range map[string]*corev1.Probe{"livenessProbe": ctr.LivenessProbe, "readinessProbe": ctr.ReadinessProbe, "startupProbe": ctr.StartupProbe} {
		if p == nil {
			continue
		}
		var port *intstr.IntOrString
		if p.HTTPGet != nil {
			port = &p.HTTPGet.Port
		} else if p.TCPSocket != nil {
			port = &p.TCPSocket.Port
		}
		if port != nil && port.Type == intstr.String && containerPort(ctr, port.StrVal) == nil {
			c.errorf(where, "%s: no container port named %q", name, port.StrVal)
		}
	}
}

func containerPort(ctr *corev1.Container, name string) *corev1.ContainerPort {
	for i := range ctr.Ports {
		if ctr.Ports[i].Name == name {
			return &ctr.Ports[i]
		}
	}
	return nil
}

// probePort resolves a probe's port to a number.
func probePort(ctr *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	if cp := containerPort(ctr, p.StrVal); cp != nil {
		return cp.ContainerPort
	}
	return 0
}

// mountFor finds the mount that holds file in ctr and the key of the
// volume's source that appears there.
func mountFor(ctr *corev1.Container, volumes map[string]*corev1.Volume, file string) (*corev1.VolumeMount, *corev1.Volume, string) {
	for i := range ctr.VolumeMounts {
		m := &ctr.VolumeMounts[i]
		v := volumes[m.Name]
		if v == nil {
			continue
		}
		if m.SubPath != "" {
			if path.Clean(m.MountPath) == path.Clean(file) {
				return m, v, m.SubPath
			}
			continue
		}
		if path.Dir(path.Clean(file)) != path.Clean(m.MountPath) {
			continue
		}
		rel := path.Base(file)
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
		case v.Secret != nil:
			items = v.Secret.Items
		}
		if len(items) == 0 {
			return m, v, rel
		}
		for _, it := range items {
			if it.Path == rel {
				return m, v, it.Key
			}
		}
		return m, v, ""
	}
	return nil, nil, ""
}

// configPath is the -config argument (or OTPD_CONFIG).
func configPath(ctr *corev1.Container) string {
	args := append(slices.Clone(ctr.Command), ctr.Args...)
	for i, a := range args {
		for _, flag := range []string{"-config", "--config"} {
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
		}
	}
	for _, e := range ctr.Env {
		if e.Name == "OTPD_CONFIG" {
			return e.Value
		}
	}
	return ""
}

// providedEnv are the variables a container gets from env and envFrom.
func (c *checker) providedEnv(ctr *corev1.Container) map[string]bool {
	env := map[string]bool{}
	for _, e := range ctr.EnvFrom {
		var keys map[string]bool
		switch {
		case e.SecretRef != nil && c.secrets[e.SecretRef.Name] != nil:
			keys = secretKeys(c.secrets[e.SecretRef.Name])
		case e.ConfigMapRef != nil && c.configMaps[e.ConfigMapRef.Name] != nil:
			keys = configMapKeys(c.configMaps[e.ConfigMapRef.Name])
		}
		for k := range keys {
			env[e.Prefix+k] = true
		}
	}
	for _, e := range ctr.Env {
		env[e.Name] = true
	}
	return env
}

// tcpPort parses host:port and tells whether the kubelet (which probes the
// pod IP) can reach it.
func tcpPort(addr string) (port int32, podReachable bool, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, false, err
	}
	ip := net.ParseIP(host)
	return int32(n), host == "" || (ip != nil && ip.IsUnspecified()), nil
}

func (c *checker) checkOtpd(where string, pod *corev1.PodSpec, ctr *corev1.Container, volumes map[string]*corev1.Volume, sidecar bool) {
	cw := fmt.Sprintf("%s container %s", where, ctr.Name)
	if !strings.Contains(ctr.Image, "otpd") {
		c.errorf(cw, "image %q is not otpd's", ctr.Image)
	}

	// The configuration file, from a mounted ConfigMap.
	file := configPath(ctr)
	if file == "" {
		c.errorf(cw, "no -config argument: otpd would start in dev mode (in-memory store, console provider)")
		return
	}
	m, v, key := mountFor(ctr, volumes, file)
	if m == nil || v == nil || v.ConfigMap == nil {
		c.errorf(cw, "-config %s is not in a mounted ConfigMap", file)
		return
	}
	cm := c.configMaps[v.ConfigMap.Name]
	if cm == nil || cm.Data[key] == "" {
		c.errorf(cw, "-config %s: ConfigMap %q has no key %q", file, v.ConfigMap.Name, key)
		return
	}
	cfg, err := ParseOtpdConfig(cm.Data[key])
	if err != nil {
		c.errorf(cw, "ConfigMap %s key %s: %v", cm.Name, key, err)
		return
	}
	c.res.Configs = append(c.res.Configs, MountedConfig{Workload: where, Container: ctr.Name, Sidecar: sidecar, Path: file, Config: cfg})

	// Every ${NAME} of otpd.yaml is in the container's environment.
	env := c.providedEnv(ctr)
	for _, name := range cfg.EnvVars() {
		if !env[name] {
			c.errorf(cw, "otpd.yaml uses ${%s} but the container's env and envFrom do not provide it", name)
		}
	}

	// Admin HTTP: the probes' target, reachable on the pod IP.
	if cfg.Listen.HTTP == "" {
		c.errorf(cw, "otpd.yaml turns listen.http off: no probes, no metrics")
	} else if httpPort, reachable, err := tcpPort(cfg.Listen.HTTP); err != nil {
		c.errorf(cw, "otpd.yaml listen.http %q: %v", cfg.Listen.HTTP, err)
	} else {
		if !reachable {
			c.errorf(cw, "otpd.yaml listen.http %q is not reachable on the pod IP: the kubelet's probes and Prometheus would fail", cfg.Listen.HTTP)
		}
		if cp := containerPort(ctr, "metrics"); cp == nil || cp.ContainerPort != httpPort {
			c.errorf(cw, "no container port named metrics on %d (listen.http)", httpPort)
		}
		checkProbe := func(name string, p *corev1.Probe, paths ...string) {
			switch {
			case p == nil:
				c.errorf(cw, "no %s", name)
			case p.HTTPGet == nil:
				c.errorf(cw, "%s is not an httpGet (the image has no shell for exec probes)", name)
			case !slices.Contains(paths, p.HTTPGet.Path):
				c.errorf(cw, "%s path %q, want %s", name, p.HTTPGet.Path, strings.Join(paths, " or "))
			case probePort(ctr, p.HTTPGet.Port) != httpPort:
				c.errorf(cw, "%s port %s is not listen.http's %d", name, p.HTTPGet.Port.String(), httpPort)
			case p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP:
				c.errorf(cw, "%s scheme %s: the admin HTTP is plain HTTP", name, p.HTTPGet.Scheme)
			}
		}
		checkProbe("livenessProbe", ctr.LivenessProbe, "/healthz")
		if !sidecar || ctr.ReadinessProbe != nil {
			checkProbe("readinessProbe", ctr.ReadinessProbe, "/readyz")
		}
		if ctr.StartupProbe != nil {
			checkProbe("startupProbe", ctr.StartupProbe, "/healthz", "/readyz")
		}
	}

	// gRPC: a TCP port, or a unix socket in an emptyDir.
	sock, isUnix := unixPath(cfg.Listen.GRPC)
	if isUnix {
		dir := path.Dir(sock)
		sm := mountAt(ctr, dir)
		if sm == nil || volumes[sm.Name] == nil || volumes[sm.Name].EmptyDir == nil {
			c.errorf(cw, "listen.grpc %s: %s is not an emptyDir mounted in otpd", cfg.Listen.GRPC, dir)
		}
		for _, other := range allContainers(pod) {
			for _, p := range other.Ports {
				if p.Name == "grpc" || p.ContainerPort == 50051 {
					c.errorf(fmt.Sprintf("%s container %s", where, other.Name), "exposes port %s/%d although otpd serves gRPC on a unix socket", p.Name, p.ContainerPort)
				}
			}
		}
	} else if grpcPort, _, err := tcpPort(cfg.Listen.GRPC); err != nil {
		c.errorf(cw, "otpd.yaml listen.grpc %q: %v", cfg.Listen.GRPC, err)
	} else if cp := containerPort(ctr, "grpc"); cp == nil || cp.ContainerPort != grpcPort {
		c.errorf(cw, "no container port named grpc on %d (listen.grpc)", grpcPort)
	}

	// TLS files from read-only Secret mounts.
	if cfg.TLS != nil {
		for key, file := range map[string]string{"tls.cert_file": cfg.TLS.CertFile, "tls.key_file": cfg.TLS.KeyFile, "tls.client_ca_file": cfg.TLS.ClientCAFile} {
			if file == "" {
				continue
			}
			m, v, k := mountFor(ctr, volumes, file)
			switch {
			case m == nil || v == nil || v.Secret == nil:
				c.errorf(cw, "%s %s is not in a mounted Secret", key, file)
			case !m.ReadOnly:
				c.errorf(cw, "%s: volumeMount %s is not readOnly", key, m.Name)
			case c.secrets[v.Secret.SecretName] != nil && !secretKeys(c.secrets[v.Secret.SecretName])[k]:
				c.errorf(cw, "%s %s: Secret %q has no key %q", key, file, v.Secret.SecretName, k)
			}
		}
	}

	// Shutdown: the kubelet must not SIGKILL a drain.
	budget, err := cfg.ShutdownBudget()
	if err != nil {
		c.errorf(cw, "otpd.yaml %v", err)
	}
	var preStop time.Duration
	if ctr.Lifecycle != nil && ctr.Lifecycle.PreStop != nil {
		h := ctr.Lifecycle.PreStop
		if h.Exec != nil {
			c.errorf(cw, "preStop exec %v: the distroless image has no shell or sleep; use lifecycle.preStop.sleep", h.Exec.Command)
		}
		if h.Sleep != nil {
			preStop = time.Duration(h.Sleep.Seconds) * time.Second
		}
	}
	grace := int64(defaultGracePeriod)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if need := preStop + budget; time.Duration(grace)*time.Second <= need {
		c.errorf(where, "terminationGracePeriodSeconds %d is not above preStop sleep %v + shutdown.delay + shutdown.timeout %v = %v: the kubelet would kill otpd mid-drain", grace, preStop, budget, need)
	}

	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		c.errorf(where, "automountServiceAccountToken is not false: otpd never calls the Kubernetes API")
	}

	if sidecar {
		c.checkSidecar(where, pod, cfg, volumes)
	}
}

// checkSidecar: otpd in the auth server's pod, gRPC on a unix socket the
// auth server reaches through the same emptyDir.
func (c *checker) checkSidecar(where string, pod *corev1.PodSpec, cfg *OtpdConfig, volumes map[string]*corev1.Volume) {
	sock, ok := unixPath(cfg.Listen.GRPC)
	if !ok {
		c.errorf(where, "otpd sidecar listens on %q, not on a unix socket", cfg.Listen.GRPC)
		return
	}
	if cfg.TLS != nil {
		c.errorf(where, "otpd sidecar has a tls block: the socket never leaves the pod")
	}
	var otpdMount *corev1.VolumeMount
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == OtpdContainerName {
			otpdMount = mountAt(&pod.InitContainers[i], path.Dir(sock))
		}
	}
	if otpdMount == nil {
		return // reported by checkOtpd
	}
	clients := 0
	for i := range pod.Containers {
		ctr := &pod.Containers[i]
		if ctr.Name == OtpdContainerName {
			continue
		}
		var m *corev1.VolumeMount
		for j := range ctr.VolumeMounts {
			if ctr.VolumeMounts[j].Name == otpdMount.Name {
				m = &ctr.VolumeMounts[j]
			}
		}
		addr := ""
		for _, e := range ctr.Env {
			if e.Name == "OTPD_ADDR" {
				addr = e.Value
			}
		}
		if m == nil && addr == "" {
			continue
		}
		clients++
		cw := fmt.Sprintf("%s container %s", where, ctr.Name)
		if m == nil {
			c.errorf(cw, "has OTPD_ADDR but does not mount otpd's socket volume %s", otpdMount.Name)
			continue
		}
		if want := "unix://" + path.Join(m.MountPath, path.Base(sock)); addr != want {
			c.errorf(cw, "OTPD_ADDR is %q, want %q (otpd's socket as mounted here)", addr, want)
		}
	}
	if clients == 0 {
		c.errorf(where, "no container mounts otpd's socket volume %s with OTPD_ADDR set: nothing can call the sidecar", otpdMount.Name)
	}
}

func mountAt(ctr *corev1.Container, dir string) *corev1.VolumeMount {
	for i := range ctr.VolumeMounts {
		if path.Clean(ctr.VolumeMounts[i].MountPath) == path.Clean(dir) {
			return &ctr.VolumeMounts[i]
		}
	}
	return nil
}

func allContainers(pod *corev1.PodSpec) []*corev1.Container {
	var all []*corev1.Container
	for i := range pod.InitContainers {
		all = append(all, &pod.InitContainers[i])
	}
	for i := range pod.Containers {
		all = append(all, &pod.Containers[i])
	}
	return all
}

// ---- objects that select pods ----

// selected are the Deployments whose pod template matches selector.
func (c *checker) selected(selector labels.Selector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range c.deployments {
		if selector.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func (c *checker) labelSelector(where string, s *metav1.LabelSelector) labels.Selector {
	if s == nil || len(s.MatchLabels)+len(s.MatchExpressions) == 0 {
		c.errorf(where, "selector is empty: it selects every pod")
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		c.errorf(where, "selector: %v", err)
		return nil
	}
	return sel
}

func hasOtpd(d *appsv1.Deployment) bool {
	for _, ctr := range allContainers(&d.Spec.Template.Spec) {
		if ctr.Name == OtpdContainerName {
			return true
		}
	}
	return false
}

func podPort(d *appsv1.Deployment, port intstr.IntOrString) bool {
	for _, ctr := range allContainers(&d.Spec.Template.Spec) {
		for _, p := range ctr.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

func (c *checker) checkService(s *corev1.Service) {
	where := "Service/" + s.Name
	if len(s.Spec.Selector) == 0 {
		c.errorf(where, "spec.selector is empty")
		return
	}
	targets := c.selected(labels.SelectorFromSet(s.Spec.Selector))
	if len(targets) == 0 {
		c.errorf(where, "selector %v matches no Deployment's pod labels", s.Spec.Selector)
	}
	for _, p := range s.Spec.Ports {
		if p.Name == "" {
			c.errorf(where, "port %d has no name", p.Port)
		}
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, d := range targets {
			if !podPort(d, target) {
				c.errorf(where, "port %s targets %s, which Deployment/%s's pods do not expose", p.Name, target.String(), d.Name)
			}
		}
		if (p.Name == "grpc" || target.String() == "grpc") && (p.AppProtocol == nil || *p.AppProtocol != "grpc") {
			c.errorf(where, "port %s carries gRPC but appProtocol is not grpc", p.Name)
		}
	}
}

func (c *checker) checkPDB(p *policyv1.PodDisruptionBudget) {
	where := "PodDisruptionBudget/" + p.Name
	sel := c.labelSelector(where, p.Spec.Selector)
	if sel == nil {
		return
	}
	targets := c.selected(sel)
	if len(targets) == 0 {
		c.errorf(where, "selects no Deployment's pods")
	}
	if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.Type != intstr.Int {
		return
	}
	for _, d := range targets {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		for _, h := range c.hpas {
			if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name && h.Spec.MinReplicas != nil {
				replicas = *h.Spec.MinReplicas
			}
		}
		if replicas <= p.Spec.MinAvailable.IntVal {
			c.errorf(where, "minAvailable %d with %d replica(s) of Deployment/%s blocks every node drain", p.Spec.MinAvailable.IntVal, replicas, d.Name)
		}
	}
}

func (c *checker) checkHPA(h *autoscalingv2.HorizontalPodAutoscaler) {
	where := "HorizontalPodAutoscaler/" + h.Name
	ref := h.Spec.ScaleTargetRef
	var target *appsv1.Deployment
	for _, d := range c.deployments {
		if ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && d.Name == ref.Name {
			target = d
		}
	}
	if target == nil {
		c.errorf(where, "scaleTargetRef %s %s/%s is not in the manifests", ref.APIVersion, ref.Kind, ref.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
		c.errorf(where, "needs 1 <= minReplicas <= maxReplicas")
	}
	if len(h.Spec.Metrics) == 0 {
		c.errorf(where, "no metrics")
	}
}

func (c *checker) checkNetworkPolicy(n *networkingv1.NetworkPolicy) {
	where := "NetworkPolicy/" + n.Name
	sel := c.labelSelector(where, &n.Spec.PodSelector)
	if sel == nil {
		return
	}
	targets := c.selected(sel)
	if len(targets) == 0 {
		c.errorf(where, "selects no Deployment's pods")
		return
	}
	for _, rule := range n.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.Type != intstr.String {
				continue
			}
			for _, d := range targets {
				if !podPort(d, *p.Port) {
					c.errorf(where, "ingress port %q is not a port of Deployment/%s's pods", p.Port.StrVal, d.Name)
				}
			}
		}
	}
	if !slices.ContainsFunc(targets, hasOtpd) {
		return
	}

	// otpd: gRPC only from the auth server's pods.
	allowsGRPC := func(r networkingv1.NetworkPolicyIngressRule) bool {
		if len(r.Ports) == 0 {
			return true
		}
		for _, p := range r.Ports {
			if p.Port == nil || p.Port.String() == "grpc" || (p.Port.Type == intstr.Int && p.Port.IntVal == 50051) {
				return true
			}
		}
		return false
	}
	grpcRules := 0
	for i, r := range n.Spec.Ingress {
		if !allowsGRPC(r) {
			continue
		}
		grpcRules++
		if len(r.From) == 0 {
			c.errorf(where, "ingress[%d] lets anyone reach otpd's gRPC port", i)
		}
		for j, peer := range r.From {
			if peer.IPBlock != nil || peer.PodSelector == nil || peer.PodSelector.MatchLabels["app.kubernetes.io/name"] != "auth-server" {
				c.errorf(where, "ingress[%d].from[%d] lets other than the auth server's pods (app.kubernetes.io/name: auth-server) reach otpd's gRPC port", i, j)
			}
		}
	}
	if slices.Contains(n.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && grpcRules == 0 {
		c.errorf(where, "no ingress rule lets the auth server reach otpd's gRPC port")
	}
	if slices.Contains(n.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		for _, need := range []struct {
			port  int32
			proto corev1.Protocol
			what  string
		}{{53, corev1.ProtocolUDP, "DNS"}, {6379, corev1.ProtocolTCP, "Redis"}, {443, corev1.ProtocolTCP, "the providers' HTTPS APIs"}} {
			found := false
			for _, r := range n.Spec.Egress {
				for _, p := range r.Ports {
					proto := corev1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					if p.Port != nil && p.Port.Type == intstr.Int && p.Port.IntVal == need.port && proto == need.proto {
						found = true
					}
				}
			}
			if !found {
				c.errorf(where, "egress does not allow %d/%s (%s)", need.port, need.proto, need.what)
			}
		}
	}
}

func (c *checker) checkServiceMonitor(m *ServiceMonitor) {
	where := "ServiceMonitor/" + m.Name
	sel := c.labelSelector(where, &m.Spec.Selector)
	if sel == nil {
		return
	}
	var targets []*corev1.Service
	for _, s := range c.services {
		if sel.Matches(labels.Set(s.Labels)) {
			targets = append(targets, s)
		}
	}
	if len(targets) == 0 {
		c.errorf(where, "selects no Service (it matches Service labels)")
	}
	if len(m.Spec.Endpoints) == 0 {
		c.errorf(where, "no endpoints")
	}
	for i, e := range m.Spec.Endpoints {
		for _, s := range targets {
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
				c.errorf(where, "endpoints[%d].port %q is not a port name of Service/%s", i, e.Port, s.Name)
			}
		}
		if e.Path != "" && e.Path != "/metrics" {
			c.errorf(where, "endpoints[%d].path %q: otpd serves /metrics", i, e.Path)
		}
		var interval, timeout model.Duration
		var err error
		if e.Interval != "" {
			if interval, err = model.ParseDuration(e.Interval); err != nil {
				c.errorf(where, "endpoints[%d].interval: %v", i, err)
			}
		}
		if e.ScrapeTimeout != "" {
			if timeout, err = model.ParseDuration(e.ScrapeTimeout); err != nil {
				c.errorf(where, "endpoints[%d].scrapeTimeout: %v", i, err)
			}
		}
		if interval > 0 && timeout > interval {
			c.errorf(where, "endpoints[%d].scrapeTimeout %s is above the interval %s", i, e.ScrapeTimeout, e.Interval)
		}
	}
}
