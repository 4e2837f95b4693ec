package validate

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

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
	// Configs are the otpd.yaml files mounted into otpd containers that otpd
	// accepts.
	Configs []MountedConfig
}

// MountedConfig is the otpd.yaml one otpd container runs with.
type MountedConfig struct {
	Text   string      // the file as mounted
	Config *OtpdConfig // what otpd makes of it in this container
}

type checker struct {
	otpd        OtpdFunc
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	res         Result
}

func (c *checker) errorf(where, format string, args ...any) {
	c.res.Problems = append(c.res.Problems, where+": "+fmt.Sprintf(format, args...))
}

// Check verifies the invariants of a rendered manifest stream that its
// schema cannot express: hardened and bounded containers, references between
// objects, placeholder-only Secrets, and for each otpd container the
// configuration otpd derives from its mounted otpd.yaml and environment
// (asked of otpd): probes and ports that match it, a shutdown budget within
// the grace period, and, for a native otpd sidecar, a unix socket shared with
// the auth server.
func Check(objs []Object, otpd OtpdFunc) Result {
	c := &checker{otpd: otpd, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	var pdbs []*policyv1.PodDisruptionBudget
	var netpols []*networkingv1.NetworkPolicy
	var monitors []*ServiceMonitor
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
			pdbs = append(pdbs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			c.hpas = append(c.hpas, v)
		case *networkingv1.NetworkPolicy:
			netpols = append(netpols, v)
		case *ServiceMonitor:
			monitors = append(monitors, v)
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
	for _, p := range pdbs {
		c.checkPDB(p)
	}
	for _, h := range c.hpas {
		c.checkHPA(h)
	}
	for _, n := range netpols {
		c.checkNetworkPolicy(n)
	}
	for _, m := range monitors {
		c.checkServiceMonitor(m)
	}
	return c.res
}

// ---- Secrets and ConfigMaps ----

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

// keysOf returns the keys of the ConfigMap or Secret (kind, name), or nil
// when the manifests do not have it.
func (c *checker) keysOf(kind, name string) map[string]bool {
	if kind == "Secret" {
		if s := c.secrets[name]; s != nil {
			return secretKeys(s)
		}
		return nil
	}
	if cm := c.configMaps[name]; cm != nil {
		return configMapKeys(cm)
	}
	return nil
}

// checkRef reports a ConfigMap or Secret (kind, name) that is not in the
// manifests, or lacks key (when key != ""), unless the reference is
// optional: the pod would never start.
func (c *checker) checkRef(where, what, kind, name, key string, optional *bool) {
	if optional != nil && *optional {
		return
	}
	keys := c.keysOf(kind, name)
	switch {
	case keys == nil:
		c.errorf(where, "%s: %s %q is not in the manifests", what, kind, name)
	case key != "" && !keys[key]:
		c.errorf(where, "%s: %s %q has no key %q", what, kind, name, key)
	}
}

// ---- Deployments and their pods ----

func (c *checker) checkDeployment(d *appsv1.Deployment) {
	where := "Deployment/" + d.Name
	spec := &d.Spec.Template.Spec
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		volumes[v.Name] = v
		what := "volume " + v.Name
		switch {
		case v.ConfigMap != nil:
			c.checkRef(where, what, "ConfigMap", v.ConfigMap.Name, "", v.ConfigMap.Optional)
			for _, it := range v.ConfigMap.Items {
				c.checkRef(where, what, "ConfigMap", v.ConfigMap.Name, it.Key, v.ConfigMap.Optional)
			}
		case v.Secret != nil:
			c.checkRef(where, what, "Secret", v.Secret.SecretName, "", v.Secret.Optional)
			for _, it := range v.Secret.Items {
				c.checkRef(where, what, "Secret", v.Secret.SecretName, it.Key, v.Secret.Optional)
			}
		}
	}
	for _, ctr := range allContainers(spec) {
		c.checkContainer(where, spec, ctr)
		if ctr.Name != OtpdContainerName {
			continue
		}
		sidecar := slices.ContainsFunc(spec.InitContainers, func(i corev1.Container) bool { return i.Name == ctr.Name })
		if sidecar && (ctr.RestartPolicy == nil || *ctr.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			c.errorf(where, "init container otpd needs restartPolicy: Always (a native sidecar); a plain init container never finishes and blocks the pod")
		}
		c.checkOtpd(where, spec, ctr, volumes, sidecar)
	}
}

func (c *checker) checkContainer(where string, pod *corev1.PodSpec, ctr *corev1.Container) {
	where = fmt.Sprintf("%s container %s", where, ctr.Name)

	// Bounded: GOMEMLIMIT comes from limits.memory, and an unbounded
	// container can starve its node.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if req := ctr.Resources.Requests[r]; req.IsZero() {
			c.errorf(where, "resources.requests.%s is not set", r)
		}
		if lim := ctr.Resources.Limits[r]; lim.IsZero() {
			c.errorf(where, "resources.limits.%s is not set", r)
		}
	}

	// Hardened (the "restricted" Pod Security Standard, which a cluster may
	// not enforce): non-root, read-only root, no escalation, no
	// capabilities, seccomp.
	sc := ctr.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if nonRoot := orPod(sc.RunAsNonRoot, psc.RunAsNonRoot); nonRoot == nil || !*nonRoot {
		c.errorf(where, "securityContext.runAsNonRoot is not true (neither on the container nor on the pod)")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.errorf(where, "securityContext.readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.errorf(where, "securityContext.allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		c.errorf(where, "securityContext.capabilities does not drop ALL and add none")
	}
	if seccomp := orPod(sc.SeccompProfile, psc.SeccompProfile); seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
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

	// Secrets and ConfigMaps of the environment.
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			c.checkRef(where, "env "+e.Name, "Secret", r.Name, r.Key, r.Optional)
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			c.checkRef(where, "env "+e.Name, "ConfigMap", r.Name, r.Key, r.Optional)
		}
	}
	for _, e := range ctr.EnvFrom {
		if r := e.SecretRef; r != nil {
			c.checkRef(where, "envFrom", "Secret", r.Name, "", r.Optional)
		}
		if r := e.ConfigMapRef; r != nil {
			c.checkRef(where, "envFrom", "ConfigMap", r.Name, "", r.Optional)
		}
	}
}

// orPod is the container's setting if it has one, else the pod's.
func orPod[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
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

// mountFor finds the ConfigMap or Secret volume that puts file into ctr, and
// the key of the volume's source that appears there.
func mountFor(ctr *corev1.Container, volumes map[string]*corev1.Volume, file string) (*corev1.Volume, string) {
	for _, m := range ctr.VolumeMounts {
		v := volumes[m.Name]
		if v == nil {
			continue
		}
		if m.SubPath != "" {
			if path.Clean(m.MountPath) == path.Clean(file) {
				return v, m.SubPath
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
			return v, rel
		}
		for _, it := range items {
			if it.Path == rel {
				return v, it.Key
			}
		}
	}
	return nil, ""
}

// otpdArgs splits otpd's command line in ctr into the configuration file
// (-config, else OTPD_CONFIG) and the other flags.
func otpdArgs(ctr *corev1.Container) (file string, rest []string) {
	args := ctr.Args
	if len(ctr.Command) > 0 { // the command replaces the image's ENTRYPOINT ["/otpd"]
		args = append(slices.Clone(ctr.Command[1:]), ctr.Args...)
	}
	for _, e := range ctr.Env {
		if e.Name == "OTPD_CONFIG" {
			file = e.Value
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-config" || a == "--config" {
			if i+1 < len(args) {
				file = args[i+1]
			}
			i++
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimPrefix(a, "-"), "-config="); ok {
			file = v
			continue
		}
		rest = append(rest, a)
	}
	return file, rest
}

// containerEnv is the environment the kubelet gives ctr (envFrom, then env)
// as far as the manifests tell: a ConfigMap's value as is, a stand-in for a
// Secret's (see standIn) and for what only the node knows. fromSecret tells
// whether any stand-in came from a Secret.
func (c *checker) containerEnv(pod *corev1.PodSpec, ctr *corev1.Container) (env map[string]string, fromSecret bool) {
	env = map[string]string{}
	for _, e := range ctr.EnvFrom {
		switch {
		case e.SecretRef != nil && c.secrets[e.SecretRef.Name] != nil:
			for k := range secretKeys(c.secrets[e.SecretRef.Name]) {
				env[e.Prefix+k], fromSecret = standIn(e.Prefix+k), true
			}
		case e.ConfigMapRef != nil && c.configMaps[e.ConfigMapRef.Name] != nil:
			for k, v := range c.configMaps[e.ConfigMapRef.Name].Data {
				env[e.Prefix+k] = v
			}
		}
	}
	optional := func(p *bool) bool { return p != nil && *p }
	for _, e := range ctr.Env {
		from := e.ValueFrom
		switch {
		case from == nil:
			env[e.Name] = e.Value
		case from.ConfigMapKeyRef != nil:
			r := from.ConfigMapKeyRef
			if cm := c.configMaps[r.Name]; cm != nil && configMapKeys(cm)[r.Key] {
				env[e.Name] = cm.Data[r.Key]
			} else if !optional(r.Optional) {
				env[e.Name] = standIn(e.Name) // the missing key is reported by checkContainer
			}
		case from.SecretKeyRef != nil:
			r := from.SecretKeyRef
			if s := c.secrets[r.Name]; (s != nil && secretKeys(s)[r.Key]) || !optional(r.Optional) {
				env[e.Name], fromSecret = standIn(e.Name), true
			}
		case from.ResourceFieldRef != nil:
			env[e.Name] = resourceValue(pod, ctr, from.ResourceFieldRef)
		default: // fieldRef: the pod's name, IP, ...
			env[e.Name] = standIn(e.Name)
		}
	}
	return env, fromSecret
}

// resourceValue is what the kubelet puts in a resourceFieldRef variable:
// the request or limit divided by the divisor, rounded up. It must be a
// number: GOMEMLIMIT=limits.memory is read by otpd's Go runtime.
func resourceValue(pod *corev1.PodSpec, ctr *corev1.Container, r *corev1.ResourceFieldSelector) string {
	for _, other := range allContainers(pod) {
		if r.ContainerName != "" && other.Name == r.ContainerName {
			ctr = other
		}
	}
	kind, name, _ := strings.Cut(r.Resource, ".")
	list := ctr.Resources.Limits
	if kind == "requests" {
		list = ctr.Resources.Requests
	}
	q := list[corev1.ResourceName(name)]
	div := r.Divisor.MilliValue()
	if div == 0 {
		div = 1000
	}
	return strconv.FormatInt((q.MilliValue()+div-1)/div, 10)
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

	// The configuration: a file from a mounted ConfigMap, as otpd reads it
	// with the container's flags and environment.
	file, args := otpdArgs(ctr)
	if file == "" {
		c.errorf(cw, "no -config argument: otpd would start in dev mode (in-memory store, console provider)")
		return
	}
	v, key := mountFor(ctr, volumes, file)
	if v == nil || v.ConfigMap == nil {
		c.errorf(cw, "-config %s is not in a mounted ConfigMap", file)
		return
	}
	cm := c.configMaps[v.ConfigMap.Name]
	text, ok := "", false
	if cm != nil {
		text, ok = cm.Data[key]
	}
	if !ok {
		c.errorf(cw, "-config %s: ConfigMap %q has no key %q", file, v.ConfigMap.Name, key)
		return
	}
	env, fromSecret := c.containerEnv(pod, ctr)
	cfg, err := c.otpd(text, args, env)
	if err != nil {
		c.errorf(cw, "%v", err)
		return
	}
	// otpd reports unset variables before anything else, and alone.
	for _, ref := range cfg.MissingEnv {
		if _, provided := env[ref.Name]; provided {
			c.errorf(cw, "otpd.yaml %s uses ${%s}, which is empty in the container's environment", ref.Key, ref.Name)
		} else {
			c.errorf(cw, "otpd.yaml %s uses ${%s}, which the container's env and envFrom do not provide", ref.Key, ref.Name)
		}
	}
	if len(cfg.MissingEnv) == 0 {
		for _, e := range cfg.Errors {
			hint := ""
			if fromSecret {
				hint = " (the values of Secrets are stand-ins: see standIn in deploy/validate)"
			}
			c.errorf(cw, "otpd rejects otpd.yaml of ConfigMap %s: %s%s", cm.Name, e, hint)
		}
	}
	if len(cfg.Errors) > 0 {
		return
	}
	c.res.Configs = append(c.res.Configs, MountedConfig{Text: text, Config: cfg})

	// Admin HTTP: the probes' target, reachable on the pod IP.
	if cfg.Listen.HTTP == "" {
		c.errorf(cw, "otpd.yaml turns listen.http off: no probes, no metrics")
	} else if httpPort, reachable, err := tcpPort(cfg.Listen.HTTP); err != nil {
		c.errorf(cw, "listen.http %q: %v", cfg.Listen.HTTP, err)
	} else {
		if !reachable {
			c.errorf(cw, "listen.http %q is not reachable on the pod IP: the kubelet's probes and Prometheus would fail", cfg.Listen.HTTP)
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

	// gRPC: a unix socket in an emptyDir, or the port named grpc that the
	// Service and the NetworkPolicy refer to.
	if sock, ok := unixPath(cfg.Listen.GRPC); ok {
		if m := mountAt(ctr, path.Dir(sock)); m == nil || volumes[m.Name] == nil || volumes[m.Name].EmptyDir == nil {
			c.errorf(cw, "listen.grpc %s: %s is not an emptyDir mounted in otpd", cfg.Listen.GRPC, path.Dir(sock))
		}
	} else if grpcPort, _, err := tcpPort(cfg.Listen.GRPC); err != nil {
		c.errorf(cw, "listen.grpc %q: %v", cfg.Listen.GRPC, err)
	} else if cp := containerPort(ctr, "grpc"); cp == nil || cp.ContainerPort != grpcPort {
		c.errorf(cw, "no container port named grpc on %d (listen.grpc)", grpcPort)
	}

	// TLS files from mounted Secrets.
	for key, file := range map[string]string{"tls.cert_file": cfg.TLS.CertFile, "tls.key_file": cfg.TLS.KeyFile, "tls.client_ca_file": cfg.TLS.ClientCAFile} {
		if file == "" {
			continue
		}
		if v, _ := mountFor(ctr, volumes, file); v == nil || v.Secret == nil {
			c.errorf(cw, "%s %s is not in a mounted Secret", key, file)
		}
	}

	// Shutdown: the kubelet must not SIGKILL a drain.
	budget := time.Duration(cfg.Shutdown.Delay + cfg.Shutdown.Timeout)
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
		c.checkSidecar(where, pod, ctr, cfg)
	}
}

// checkSidecar: otpd in the auth server's pod, gRPC on a unix socket the
// auth server reaches through the same emptyDir.
func (c *checker) checkSidecar(where string, pod *corev1.PodSpec, otpd *corev1.Container, cfg *OtpdConfig) {
	sock, ok := unixPath(cfg.Listen.GRPC)
	if !ok {
		c.errorf(where, "otpd sidecar listens on %q, not on a unix socket", cfg.Listen.GRPC)
		return
	}
	otpdMount := mountAt(otpd, path.Dir(sock))
	if otpdMount == nil {
		return // reported by checkOtpd
	}
	clients := 0
	for i := range pod.Containers {
		ctr := &pod.Containers[i]
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

// labelSelector converts s, reporting an empty selector (it selects
// everything in the namespace).
func (c *checker) labelSelector(where string, s *metav1.LabelSelector) labels.Selector {
	if s == nil || len(s.MatchLabels)+len(s.MatchExpressions) == 0 {
		c.errorf(where, "selector is empty: it selects everything in the namespace")
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		c.errorf(where, "selector: %v", err)
		return nil
	}
	return sel
}

// targets returns the Deployments whose pods s selects, reporting a selector
// that selects none.
func (c *checker) targets(where string, s *metav1.LabelSelector) []*appsv1.Deployment {
	sel := c.labelSelector(where, s)
	if sel == nil {
		return nil
	}
	out := c.selected(sel)
	if len(out) == 0 {
		c.errorf(where, "selects no Deployment's pods")
	}
	return out
}

func hasOtpd(d *appsv1.Deployment) bool {
	return slices.ContainsFunc(allContainers(&d.Spec.Template.Spec), func(ctr *corev1.Container) bool { return ctr.Name == OtpdContainerName })
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
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, d := range targets {
			if !podPort(d, target) {
				c.errorf(where, "port %s targets %s, which Deployment/%s's pods do not expose", p.Name, target.String(), d.Name)
			}
		}
	}
}

func (c *checker) checkPDB(p *policyv1.PodDisruptionBudget) {
	where := "PodDisruptionBudget/" + p.Name
	targets := c.targets(where, p.Spec.Selector)
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
	ref := h.Spec.ScaleTargetRef
	if !slices.ContainsFunc(c.deployments, func(d *appsv1.Deployment) bool {
		return ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && d.Name == ref.Name
	}) {
		c.errorf("HorizontalPodAutoscaler/"+h.Name, "scaleTargetRef %s %s/%s is not in the manifests", ref.APIVersion, ref.Kind, ref.Name)
	}
}

func (c *checker) checkNetworkPolicy(n *networkingv1.NetworkPolicy) {
	where := "NetworkPolicy/" + n.Name
	targets := c.targets(where, &n.Spec.PodSelector)
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
		return len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(p networkingv1.NetworkPolicyPort) bool {
			return p.Port == nil || p.Port.String() == "grpc" || (p.Port.Type == intstr.Int && p.Port.IntVal == 50051)
		})
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
	if !slices.Contains(n.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		return
	}
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

// checkServiceMonitor: a wrong port or path leaves otpd unscraped, and no
// alert rule would notice (they all need otpd's metrics).
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
	for i, e := range m.Spec.Endpoints {
		for _, s := range targets {
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
				c.errorf(where, "endpoints[%d].port %q is not a port name of Service/%s", i, e.Port, s.Name)
			}
		}
		if e.Path != "" && e.Path != "/metrics" {
			c.errorf(where, "endpoints[%d].path %q: otpd serves /metrics", i, e.Path)
		}
	}
}
