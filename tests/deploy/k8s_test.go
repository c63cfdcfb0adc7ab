package deploy_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/collector"
	"github.com/marketpipe/marketpipe/services/loader"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/transformer"
)

// The kustomization roots marketpipe ships; each must build into a coherent set of objects.
var k8sRoots = []string{"deploy/k8s", "deploy/k8s/base", "deploy/k8s/overlays/dev", "deploy/k8s/overlays/autoscaling", "deploy/k8s/overlays/tls"}

const namespace = "marketpipe"

// scheme knows every kind the manifests may hold: Kubernetes' own and KEDA's. A kind outside
// it is an error.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kedav1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes YAML into the scheme's Go types; an unknown or duplicated field is an error.
var strict = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// manifests is what one kustomization root builds, decoded into typed objects.
type manifests struct {
	root          string
	objects       []runtime.Object
	deployments   map[string]*appsv1.Deployment
	statefulSets  map[string]*appsv1.StatefulSet
	jobs          map[string]*batchv1.Job
	services      map[string]*corev1.Service
	configMaps    map[string]*corev1.ConfigMap
	secrets       map[string]*corev1.Secret
	pdbs          []*policyv1.PodDisruptionBudget
	scaledObjects map[string]*kedav1alpha1.ScaledObject
	netpols       []*networkingv1.NetworkPolicy
}

var (
	buildMu sync.Mutex
	builds  = map[string]*manifests{}
)

// build runs kustomize (sigs.k8s.io/kustomize/api, what `kubectl kustomize` runs) on a root and
// decodes every object strictly.
func build(t *testing.T, root string) *manifests {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if m, ok := builds[root]; ok {
		return m
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), path(t, root))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", root, err)
	}
	m := &manifests{
		root: root, deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		jobs: map[string]*batchv1.Job{}, services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, scaledObjects: map[string]*kedav1alpha1.ScaledObject{},
	}
	for _, r := range res.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s: %v", root, r.CurId(), err)
		}
		obj, _, err := strict.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("%s: %s does not decode strictly into its API type: %v", root, r.CurId(), err)
		}
		m.objects = append(m.objects, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			m.statefulSets[o.Name] = o
		case *batchv1.Job:
			m.jobs[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *corev1.Secret:
			m.secrets[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *kedav1alpha1.ScaledObject:
			m.scaledObjects[o.Name] = o
		case *networkingv1.NetworkPolicy:
			m.netpols = append(m.netpols, o)
		}
	}
	builds[root] = m
	return m
}

// workload is a Deployment, StatefulSet or Job with its pod template.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector // nil for a Job
	template   *corev1.PodTemplateSpec
}

func (w workload) String() string { return w.kind + "/" + w.name }

func (m *manifests) workloads() []workload {
	var out []workload
	for _, d := range m.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Spec.Selector, &d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, s.Spec.Selector, &s.Spec.Template})
	}
	for _, j := range m.jobs {
		out = append(out, workload{"Job", j.Name, nil, &j.Spec.Template})
	}
	slices.SortFunc(out, func(a, b workload) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// selects reports whether a label selector (or a Service's selector map) picks a pod template.
func selects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(podLabels))
}

// isMarketpipe reports whether a container runs the marketpipe image (after kustomize's images
// transform: marketpipe:TAG, or REGISTRY/marketpipe:TAG).
func isMarketpipe(c corev1.Container) bool {
	name, _, _ := strings.Cut(c.Image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name == "marketpipe" || strings.HasSuffix(name, "/marketpipe")
}

func marketpipeContainers(w workload) []corev1.Container {
	var out []corev1.Container
	for _, c := range w.template.Spec.Containers {
		if isMarketpipe(c) {
			out = append(out, c)
		}
	}
	return out
}

// containerEnv is the environment a container sees: its envFrom ConfigMaps' keys and its own
// env (values from the ConfigMaps; "" for values from Secrets and fields).
func (m *manifests) containerEnv(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			if cm := m.configMaps[e.ConfigMapRef.Name]; cm != nil {
				for k, v := range cm.Data {
					env[k] = v
				}
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// documentedSecret reports whether deploy/k8s/README.md says how to create Secret name (with
// key, when given) out of band.
func documentedSecret(t *testing.T, name, key string) bool {
	readme := string(readFile(t, "deploy/k8s/README.md"))
	i := strings.Index(readme, "create secret generic "+name+" ")
	if i < 0 {
		return false
	}
	if key == "" {
		return true
	}
	cmd := readme[i:]
	if end := strings.Index(cmd, "\n\n"); end >= 0 {
		cmd = cmd[:end]
	}
	return strings.Contains(cmd, "="+key+"=") || strings.Contains(cmd, "--from-file="+key+"=") ||
		strings.Contains(cmd, "--from-literal="+key+"=")
}

// checkRef checks that a reference to a ConfigMap or Secret (and key, when given) resolves:
// defined in the set, or, for a Secret, documented as created out of band.
func (m *manifests) checkRef(t *testing.T, from workload, kind, name, key string) {
	t.Helper()
	switch kind {
	case "ConfigMap":
		cm := m.configMaps[name]
		if cm == nil {
			t.Errorf("%s: ConfigMap %s is not defined", from, name)
		} else if _, ok := cm.Data[key]; key != "" && !ok {
			t.Errorf("%s: ConfigMap %s has no key %s", from, name, key)
		}
	case "Secret":
		s := m.secrets[name]
		if s == nil {
			if !documentedSecret(t, name, key) {
				t.Errorf("%s: Secret %s (key %q) is neither defined nor documented in deploy/k8s/README.md", from, name, key)
			}
			return
		}
		_, inData := s.Data[key]
		_, inString := s.StringData[key]
		if key != "" && !inData && !inString {
			t.Errorf("%s: Secret %s has no key %s", from, name, key)
		}
	}
}

func TestKustomizeRoots(t *testing.T) {
	for _, root := range k8sRoots {
		t.Run(root, func(t *testing.T) {
			m := build(t, root)
			if len(m.objects) == 0 {
				t.Fatal("builds no object")
			}
			sawNamespace := false
			for _, o := range m.objects {
				meta, err := metaOf(o)
				if err != nil {
					t.Fatal(err)
				}
				kind := o.GetObjectKind().GroupVersionKind().Kind
				if errs := validation.IsDNS1123Label(meta.GetName()); len(errs) > 0 {
					t.Errorf("%s/%s: name: %v", kind, meta.GetName(), errs)
				}
				if kind == "Namespace" {
					sawNamespace = sawNamespace || meta.GetName() == namespace
				} else if meta.GetNamespace() != namespace {
					t.Errorf("%s/%s: namespace %q; want %s", kind, meta.GetName(), meta.GetNamespace(), namespace)
				}
			}
			if !sawNamespace {
				t.Errorf("no Namespace %s", namespace)
			}
		})
	}
}

func metaOf(o runtime.Object) (metav1.Object, error) {
	a, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", o)
	}
	return a, nil
}

func TestK8sWorkloads(t *testing.T) {
	for _, root := range k8sRoots {
		m := build(t, root)
		for _, w := range m.workloads() {
			t.Run(root+"/"+w.String(), func(t *testing.T) { m.checkWorkload(t, w) })
		}
	}
}

// checkWorkload holds for every workload: selectors, references, restricted Pod Security,
// memory requests and limits.
func (m *manifests) checkWorkload(t *testing.T, w workload) {
	if w.selector != nil && !selects(w.selector, w.template.Labels) {
		t.Errorf("selector %v does not match the pod template's labels %v", w.selector, w.template.Labels)
	}
	pod := w.template.Spec
	if len(pod.Containers) == 0 {
		t.Fatal("no containers")
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			m.checkRef(t, w, "ConfigMap", v.ConfigMap.Name, "")
		}
		if v.Secret != nil {
			for _, item := range v.Secret.Items {
				m.checkRef(t, w, "Secret", v.Secret.SecretName, item.Key)
			}
			if len(v.Secret.Items) == 0 {
				m.checkRef(t, w, "Secret", v.Secret.SecretName, "")
			}
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				switch {
				case src.ConfigMap != nil:
					for _, item := range src.ConfigMap.Items {
						m.checkRef(t, w, "ConfigMap", src.ConfigMap.Name, item.Key)
					}
				case src.Secret != nil:
					for _, item := range src.Secret.Items {
						m.checkRef(t, w, "Secret", src.Secret.Name, item.Key)
					}
				}
			}
		}
	}
	if w.kind == "StatefulSet" {
		sts := m.statefulSets[w.name]
		for _, c := range sts.Spec.VolumeClaimTemplates {
			volumes[c.Name] = true
		}
		if m.services[sts.Spec.ServiceName] == nil {
			t.Errorf("serviceName %q is not a Service", sts.Spec.ServiceName)
		}
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if c.Image == "" {
			t.Errorf("container %s: no image", c.Name)
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for name, probe := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
			if probe == nil {
				continue
			}
			for _, port := range []*intstrPort{httpPort(probe), tcpPort(probe)} {
				if port != nil && port.named != "" && !ports[port.named] {
					t.Errorf("container %s: %s port %q is not a named container port", c.Name, name, port.named)
				}
			}
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("container %s: volumeMount %s has no volume", c.Name, vm.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				m.checkRef(t, w, "ConfigMap", e.ConfigMapRef.Name, "")
			}
			if e.SecretRef != nil {
				m.checkRef(t, w, "Secret", e.SecretRef.Name, "")
			}
		}
		for _, e := range c.Env {
			if vf := e.ValueFrom; vf != nil {
				switch {
				case vf.ConfigMapKeyRef != nil:
					m.checkRef(t, w, "ConfigMap", vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
				case vf.SecretKeyRef != nil:
					m.checkRef(t, w, "Secret", vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
				case vf.ResourceFieldRef != nil:
					if cn := vf.ResourceFieldRef.ContainerName; cn != "" && cn != c.Name {
						t.Errorf("container %s: env %s reads the resources of container %s", c.Name, e.Name, cn)
					}
				}
			}
			if secretName.MatchString(e.Name) && e.Value != "" {
				t.Errorf("container %s: env %s has a literal value", c.Name, e.Name)
			}
		}
		// The namespace enforces the restricted Pod Security Standard.
		csc, psc := c.SecurityContext, pod.SecurityContext
		if csc == nil {
			csc = &corev1.SecurityContext{}
		}
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if nonRoot := cmpPtr(csc.RunAsNonRoot, psc.RunAsNonRoot); nonRoot == nil || !*nonRoot {
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if u := cmpPtr(csc.RunAsUser, psc.RunAsUser); u != nil && *u == 0 {
			t.Errorf("container %s: runAsUser 0", c.Name)
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: capabilities.drop does not include ALL", c.Name)
		}
		if sp := cmpPtr(csc.SeccompProfile, psc.SeccompProfile); sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccompProfile is not RuntimeDefault", c.Name)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: no memory request and limit", c.Name)
		}
	}
}

// cmpPtr is the container's setting when it has one, else the pod's.
func cmpPtr[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}

// intstrPort is a probe's port: a name or a number.
type intstrPort struct {
	named  string
	number int
}

func httpPort(p *corev1.Probe) *intstrPort {
	if p.HTTPGet == nil {
		return nil
	}
	return &intstrPort{p.HTTPGet.Port.StrVal, p.HTTPGet.Port.IntValue()}
}

func tcpPort(p *corev1.Probe) *intstrPort {
	if p.TCPSocket == nil {
		return nil
	}
	return &intstrPort{p.TCPSocket.Port.StrVal, p.TCPSocket.Port.IntValue()}
}

func TestK8sMarketpipe(t *testing.T) {
	for _, root := range k8sRoots {
		m := build(t, root)
		t.Run(root, func(t *testing.T) {
			cfg := m.configMaps["marketpipe-config"]
			if cfg == nil {
				t.Fatal("no ConfigMap marketpipe-config")
			}
			for k := range cfg.Data {
				if !knownVar("", k) {
					t.Errorf("ConfigMap key %s is not a variable a service reads", k)
				}
				if secretName.MatchString(k) {
					t.Errorf("ConfigMap key %s is a secret: put it in a Secret", k)
				}
			}
			natsURL, err := url.Parse(cfg.Data["NATS_URL"])
			if err != nil || !m.servicePort(natsURL.Hostname(), natsURL.Port()) {
				t.Errorf("NATS_URL %q is not a Service and port in the manifests", cfg.Data["NATS_URL"])
			}
			ran := map[string]bool{}
			for _, w := range m.workloads() {
				for _, c := range marketpipeContainers(w) {
					if !strings.Contains(c.Image, ":") {
						t.Errorf("%s: image %s has no tag after kustomize's images transform", w, c.Image)
					}
					if len(c.Command) == 0 || !strings.HasPrefix(c.Command[0], binDir) {
						t.Errorf("%s: command %q does not start with %s<binary>", w, c.Command, binDir)
						continue
					}
					program := strings.TrimPrefix(c.Command[0], binDir)
					if _, ok := binaries[program]; !ok {
						t.Errorf("%s: runs %s, which the Dockerfile does not build", w, program)
					}
					if program == "marketpipe" && len(c.Command) > 1 {
						program = c.Command[1] // marketpipe migrate
					}
					ran[program] = true
					env := m.containerEnv(c)
					for _, k := range requiredEnv(program) {
						if _, ok := env[k]; !ok {
							t.Errorf("%s: %s is not set", w, k)
						}
					}
					if vendorStages[program] {
						checkMountedFile(t, w, c, env["VENDOR_CREDENTIALS"])
					}
				}
			}
			for _, want := range append([]string{"migrate"}, stages...) {
				if !ran[want] {
					t.Errorf("nothing runs %s", want)
				}
			}
			if strings.HasSuffix(root, "/dev") != ran["vendorsim"] {
				t.Errorf("vendorsim runs: %v; want it in the dev overlay only", ran["vendorsim"])
			}
		})
	}
}

// checkMountedFile checks that file is inside a volume mounted into c, and that a Secret
// volume's items put it there.
func checkMountedFile(t *testing.T, w workload, c corev1.Container, file string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, vm.MountPath+"/")
		if !ok {
			continue
		}
		for _, v := range w.template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil || len(v.Secret.Items) == 0 {
				return
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return
				}
			}
			t.Errorf("%s: %s is mounted at %s but no item of its Secret is %s", w, vm.Name, vm.MountPath, rel)
			return
		}
	}
	t.Errorf("%s: %q is not inside any volume mounted into %s", w, file, c.Name)
}

// servicePort reports whether a Service named host exposes port.
func (m *manifests) servicePort(host, port string) bool {
	svc := m.services[host]
	if svc == nil {
		return false
	}
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return true
		}
	}
	return false
}

func TestK8sStages(t *testing.T) {
	for _, root := range k8sRoots {
		m := build(t, root)
		cfg := m.configMaps["marketpipe-config"]
		for _, name := range stages {
			t.Run(root+"/"+name, func(t *testing.T) {
				d := m.deployments[name]
				if d == nil {
					t.Fatalf("no Deployment %s", name)
				}
				if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
					t.Errorf("replicas %v; want at least 2", d.Spec.Replicas)
				}
				pod := d.Spec.Template.Spec
				if g := pod.TerminationGracePeriodSeconds; g == nil || *g != 60 {
					t.Errorf("terminationGracePeriodSeconds %v; want 60 to drain in-flight messages", g)
				}
				if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
					t.Error("pod securityContext.runAsNonRoot is not true")
				}
				w := workload{"Deployment", name, d.Spec.Selector, &d.Spec.Template}
				mp := marketpipeContainers(w)
				if len(mp) != 1 {
					t.Fatalf("%d marketpipe containers; want 1", len(mp))
				}
				c := mp[0]
				if !slices.Equal(c.Command, []string{binDir + name}) {
					t.Errorf("command %q; want [%s%s]", c.Command, binDir, name)
				}
				httpPort := int32(0)
				for _, p := range c.Ports {
					if p.Name == "http" {
						httpPort = p.ContainerPort
					}
				}
				if httpPort != 8080 {
					t.Errorf("container port http = %d; want 8080", httpPort)
				}
				if addr := m.containerEnv(c)["HTTP_ADDR"]; addr != "" && addr != ":8080" {
					t.Errorf("HTTP_ADDR %q does not serve on the http port 8080", addr)
				}
				for probeName, probe := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
					if probe == nil || probe.HTTPGet == nil {
						t.Errorf("no HTTP probe on %s", probeName)
						continue
					}
					if probe.HTTPGet.Path != probeName || probe.HTTPGet.Port.StrVal != "http" {
						t.Errorf("probe %s:%s; want %s on the named port http", probe.HTTPGet.Path, probe.HTTPGet.Port.String(), probeName)
					}
				}
				ann := d.Spec.Template.Annotations
				if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "8080" || ann["prometheus.io/path"] != "/metrics" {
					t.Errorf("Prometheus annotations %v; want scrape true, port 8080, path /metrics", ann)
				}
				if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
					t.Error("readOnlyRootFilesystem is not true")
				}
				if c.Resources.Requests.Cpu().IsZero() {
					t.Error("no cpu request")
				}
				if lim := c.Resources.Limits.Memory(); wideStages[name] && lim.Cmp(resource.MustParse("512Mi")) != 0 {
					t.Errorf("memory limit %s; want 512Mi", lim)
				}
				pdbs := 0
				for _, p := range m.pdbs {
					if selects(p.Spec.Selector, d.Spec.Template.Labels) {
						pdbs++
						if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != 1 {
							t.Errorf("PodDisruptionBudget %s: minAvailable %v; want 1", p.Name, p.Spec.MinAvailable)
						}
					}
				}
				if pdbs != 1 {
					t.Errorf("%d PodDisruptionBudgets select %s; want 1", pdbs, name)
				}
				if cfg != nil && vendorStages[name] && cfg.Data["VENDOR_URL"] == "" {
					t.Error("VENDOR_URL is empty")
				}
			})
		}
	}
}

func TestK8sSelectors(t *testing.T) {
	for _, root := range k8sRoots {
		m := build(t, root)
		selected := func(sel *metav1.LabelSelector) []workload {
			var out []workload
			for _, w := range m.workloads() {
				if w.kind != "Job" && selects(sel, w.template.Labels) {
					out = append(out, w)
				}
			}
			return out
		}
		for _, p := range m.pdbs {
			t.Run(root+"/PodDisruptionBudget/"+p.Name, func(t *testing.T) {
				if len(selected(p.Spec.Selector)) == 0 {
					t.Error("selects no Deployment or StatefulSet")
				}
				if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
					t.Error("neither minAvailable nor maxUnavailable")
				}
			})
		}
		for _, svc := range m.services {
			t.Run(root+"/Service/"+svc.Name, func(t *testing.T) {
				ws := selected(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
				if len(ws) == 0 {
					t.Fatal("selects no workload")
				}
				for _, p := range svc.Spec.Ports {
					if p.TargetPort.StrVal == "" {
						continue
					}
					for _, w := range ws {
						found := false
						for _, c := range w.template.Spec.Containers {
							for _, cp := range c.Ports {
								found = found || cp.Name == p.TargetPort.StrVal
							}
						}
						if !found {
							t.Errorf("targetPort %s is not a named port of %s", p.TargetPort.StrVal, w)
						}
					}
				}
			})
		}
	}
}

func TestK8sMigrateJob(t *testing.T) {
	m := build(t, "deploy/k8s/base")
	var jobs []*batchv1.Job
	for _, j := range m.jobs {
		for _, c := range marketpipeContainers(workload{"Job", j.Name, nil, &j.Spec.Template}) {
			if slices.Equal(c.Command, []string{binDir + "marketpipe", "migrate"}) {
				jobs = append(jobs, j)
			}
		}
	}
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs run marketpipe migrate; want 1", len(jobs))
	}
	if rp := jobs[0].Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q", rp)
	}
	if b := jobs[0].Spec.BackoffLimit; b == nil || *b < 3 {
		t.Errorf("backoffLimit %v: ClickHouse may not be up yet, retry", b)
	}
}

// natsConfDir writes the files the nats container's --config directory holds (the projected
// ConfigMap and Secret items) into a temporary directory, with the Secrets made as their
// documentation says: nats-auth.conf and the TLS certificates by auth.Init and auth.InitTLS
// (what `marketpipe auth init` runs). It returns the path of the main configuration and the
// environment it refers to.
func (m *manifests) natsConfDir(t *testing.T, sts *appsv1.StatefulSet) (string, map[string]string) {
	t.Helper()
	c := sts.Spec.Template.Spec.Containers[0]
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %q do not pass --config", c.Args)
	}
	confPath := c.Args[i+1]
	dir := t.TempDir()
	creds := filepath.Join(t.TempDir(), "creds")
	if _, err := auth.Init(creds, services.Identities()); err != nil {
		t.Fatal(err)
	}
	// The server certificate as deploy/k8s/README.md says to make it (auth init --tls-host).
	if _, err := auth.InitTLS(creds, []string{"nats", "nats.marketpipe.svc", "*.nats-headless"}); err != nil {
		t.Fatal(err)
	}
	secretFiles := map[string]string{"ca.crt": filepath.Join(creds, auth.TLSCA), "tls.crt": filepath.Join(creds, auth.TLSServerCert),
		"tls.key": filepath.Join(creds, auth.TLSServerKey), auth.ServerInclude: filepath.Join(creds, auth.ServerInclude)}
	mounts := map[string]string{} // mount path -> temporary directory
	found := false
	for _, vm := range c.VolumeMounts {
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			var items []corev1.KeyToPath
			var data map[string]string
			addCM := func(name string, its []corev1.KeyToPath) {
				if cm := m.configMaps[name]; cm != nil {
					items = append(items, its...)
					for k, v := range cm.Data {
						data[k] = v
					}
				}
			}
			data = map[string]string{}
			secretItems := []corev1.KeyToPath{}
			switch {
			case v.ConfigMap != nil:
				addCM(v.ConfigMap.Name, v.ConfigMap.Items)
			case v.Secret != nil:
				secretItems = v.Secret.Items
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					if src.ConfigMap != nil {
						addCM(src.ConfigMap.Name, src.ConfigMap.Items)
					}
					if src.Secret != nil {
						secretItems = append(secretItems, src.Secret.Items...)
					}
				}
			default:
				continue
			}
			d := filepath.Join(dir, vm.Name)
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
			mounts[vm.MountPath] = d
			for _, it := range items {
				if err := os.WriteFile(filepath.Join(d, it.Path), []byte(data[it.Key]), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for _, it := range secretItems {
				src, ok := secretFiles[it.Key]
				if !ok {
					t.Fatalf("volume %s: Secret key %s is not one the documentation makes", v.Name, it.Key)
				}
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, it.Path), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if strings.HasPrefix(confPath, vm.MountPath+"/") {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("%s is not in a volume mounted into the nats container", confPath)
	}
	// The configuration names mounted files by their paths in the container: point them here.
	main := filepath.Join(mounts[filepath.Dir(confPath)], filepath.Base(confPath))
	for _, d := range mounts {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			f := filepath.Join(d, e.Name())
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			for mp, td := range mounts {
				s = strings.ReplaceAll(s, mp+"/", td+"/")
			}
			if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			env[e.Name] = "nats-1"
		}
	}
	return main, env
}

// natsOptions loads the nats container's configuration, with its includes, with the server's
// own parser.
func (m *manifests) natsOptions(t *testing.T, sts *appsv1.StatefulSet) *server.Options {
	t.Helper()
	main, env := m.natsConfDir(t, sts)
	return natsOptionsFromFile(t, main, env)
}

// TestK8sNATS checks that the NATS StatefulSet is a JetStream cluster whose size is the
// services' NATS_REPLICAS, as its comment and the ConfigMap's say.
func TestK8sNATS(t *testing.T) {
	m := build(t, "deploy/k8s/base")
	sts := m.statefulSets["nats"]
	if sts == nil {
		t.Fatal("no StatefulSet nats")
	}
	replicas := 0
	if sts.Spec.Replicas != nil {
		replicas = int(*sts.Spec.Replicas)
	}
	if replicas != 3 {
		t.Errorf("replicas %d; want 3 (a JetStream quorum survives one loss)", replicas)
	}
	headless := m.services[sts.Spec.ServiceName]
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("serviceName %q is not a headless Service", sts.Spec.ServiceName)
	}
	if !headless.Spec.PublishNotReadyAddresses {
		t.Error("the headless Service does not publish not-ready addresses: routes could not resolve while the cluster forms")
	}
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		t.Error("no volumeClaimTemplates: JetStream's files would not survive a restart")
	}
	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(sts.Spec.Template.Spec.Containers))
	}
	c := sts.Spec.Template.Spec.Containers[0]
	if !strings.HasPrefix(c.Image, "nats:2.11") {
		t.Errorf("image %s; want nats:2.11", c.Image)
	}
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %q do not pass --config", c.Args)
	}
	opts := m.natsOptions(t, sts)
	checkJetStream(t, opts)
	if opts.ServerName != "nats-1" {
		t.Errorf("server_name %q; want the pod name, from the environment", opts.ServerName)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = int(p.ContainerPort)
	}
	for name, want := range map[string]int{"client": opts.Port, "cluster": opts.Cluster.Port, "monitor": opts.HTTPPort} {
		if ports[name] != want {
			t.Errorf("container port %s = %d; the configuration listens on %d", name, ports[name], want)
		}
	}
	var routes, want []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	for i := range replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, headless.Name, opts.Cluster.Port))
	}
	if !slices.Equal(routes, want) {
		t.Errorf("routes %v; want one per replica %v", routes, want)
	}
	onVolume := false
	for _, vm := range c.VolumeMounts {
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			if vm.Name == vct.Name && strings.HasPrefix(opts.StoreDir, vm.MountPath+"/") {
				onVolume = true
			}
		}
	}
	if !onVolume {
		t.Errorf("store_dir %s is not on the volume claim", opts.StoreDir)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!strings.Contains(strings.Join(c.Lifecycle.PreStop.Exec.Command, " "), "ldm="+opts.PidFile) {
		t.Errorf("preStop does not put the server at pid_file %s in lame duck mode", opts.PidFile)
	}

	// The services replicate every stream on every node, within each node's file budget.
	cfg := m.configMaps["marketpipe-config"]
	if cfg == nil {
		t.Fatal("no ConfigMap marketpipe-config")
	}
	lookup := func(k string) (string, bool) { v, ok := cfg.Data[k]; return v, ok }
	mc, err := config.Load(lookup)
	if err != nil {
		t.Fatalf("marketpipe-config: %v", err)
	}
	if mc.NATS.Replicas != replicas {
		t.Errorf("NATS_REPLICAS %d; want the NATS StatefulSet's %d replicas, as its comment promises", mc.NATS.Replicas, replicas)
	}
	if mc.NATS.MaxBytes > opts.JetStreamMaxStore {
		t.Errorf("NATS_MAX_BYTES %d does not fit max_file_store %d: JetStream would refuse the streams", mc.NATS.MaxBytes, opts.JetStreamMaxStore)
	}
	for _, w := range m.workloads() {
		for _, c := range marketpipeContainers(w) {
			if env := m.containerEnv(c); env["NATS_REPLICAS"] != strconv.Itoa(replicas) {
				t.Errorf("%s: NATS_REPLICAS %q", w, env["NATS_REPLICAS"])
			}
		}
	}
	// The comments say what the manifests do.
	for file, text := range map[string]string{
		"deploy/k8s/base/nats.yaml":   fmt.Sprintf("R%d: NATS_REPLICAS", replicas),
		"deploy/k8s/base/config.yaml": fmt.Sprintf("NATS_REPLICAS: %q", strconv.Itoa(replicas)),
		"deploy/k8s/README.md":        fmt.Sprintf("NATS_REPLICAS: \"%d\"", replicas),
	} {
		if !strings.Contains(string(readFile(t, file)), text) {
			t.Errorf("%s does not say %s", file, text)
		}
	}
}

func TestK8sDevOverlay(t *testing.T) {
	m := build(t, "deploy/k8s/overlays/dev")
	cfg := m.configMaps["marketpipe-config"]
	if cfg == nil {
		t.Fatal("no ConfigMap marketpipe-config")
	}
	u, err := url.Parse(cfg.Data["VENDOR_URL"])
	if err != nil || !m.servicePort(u.Hostname(), u.Port()) || u.Path != "/eap" {
		t.Errorf("VENDOR_URL %q is not the vendorsim Service's /eap", cfg.Data["VENDOR_URL"])
	}
	host, port, _ := strings.Cut(cfg.Data["CLICKHOUSE_ADDR"], ":")
	if !m.servicePort(host, port) {
		t.Errorf("CLICKHOUSE_ADDR %q is not a Service port", cfg.Data["CLICKHOUSE_ADDR"])
	}
	if ch := m.statefulSets["clickhouse"]; ch == nil {
		t.Error("no ClickHouse StatefulSet")
	} else if ch.Spec.Replicas == nil || *ch.Spec.Replicas != 1 {
		t.Errorf("ClickHouse replicas %v; want a single node", ch.Spec.Replicas)
	}
	sim := m.deployments["vendorsim"]
	if sim == nil {
		t.Fatal("no vendorsim Deployment")
	}
	w := workload{"Deployment", sim.Name, sim.Spec.Selector, &sim.Spec.Template}
	c := marketpipeContainers(w)
	if len(c) != 1 {
		t.Fatal("vendorsim does not run the marketpipe image")
	}
	cmd := c[0].Command
	if i := slices.Index(cmd, "-addr"); i < 0 || !strings.HasSuffix(cmd[i+1], ":"+u.Port()) {
		t.Errorf("vendorsim command %q does not listen on VENDOR_URL's port %s", cmd, u.Port())
	}
	if i := slices.Index(cmd, "-credentials"); i < 0 || cmd[i+1] != cfg.Data["VENDOR_CREDENTIALS"] {
		t.Errorf("vendorsim command %q does not check the stages' credentials %s", cmd, cfg.Data["VENDOR_CREDENTIALS"])
	} else {
		checkMountedFile(t, w, c[0], cmd[i+1])
	}
}

// stageConsumers are the durable JetStream consumers (stream and name) each stage's replicas
// share, from the services' own definitions: the lag KEDA scales each stage on.
var stageConsumers = map[string][][2]string{
	requester.Name: {{events.JobsStream, requester.Name}},
	poller.Name:    {{events.JobsStream, poller.Name}},
	collector.Name: {{events.JobsStream, collector.Name}},
	"transformer":  {{events.JobsStream, transformer.Name}, {events.ChunksStream, transformer.ChunkName}},
	"loader":       {{events.RowsStream, loader.Name}},
}

// TestKEDA checks the autoscaling overlay's ScaledObjects, decoded into KEDA's own API types
// and checked with KEDA's own validation: one per stage, on that stage's Deployment, never
// below its PodDisruptionBudget's need, with a nats-jetstream trigger on each consumer.
func TestKEDA(t *testing.T) {
	m := build(t, "deploy/k8s/overlays/autoscaling")
	if len(m.scaledObjects) != len(stages) {
		t.Errorf("%d ScaledObjects; want one per stage (%d)", len(m.scaledObjects), len(stages))
	}
	for _, name := range stages {
		t.Run(name, func(t *testing.T) {
			so := m.scaledObjects[name]
			if so == nil {
				t.Fatalf("no ScaledObject %s", name)
			}
			if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
				t.Error(err)
			}
			if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(so); err != nil {
				t.Error(err)
			}
			if err := kedav1alpha1.CheckFallbackValid(so); err != nil {
				t.Error(err)
			}
			ref := so.Spec.ScaleTargetRef
			if ref == nil || (ref.Kind != "" && ref.Kind != "Deployment") || m.deployments[ref.Name] == nil || ref.Name != name {
				t.Fatalf("scaleTargetRef %+v is not the Deployment %s", ref, name)
			}
			if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 2 {
				t.Errorf("minReplicaCount %v; want at least 2 (the PodDisruptionBudget keeps one)", so.Spec.MinReplicaCount)
			}
			if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < 3 {
				t.Errorf("maxReplicaCount %v: leaves no room to scale", so.Spec.MaxReplicaCount)
			}
			var got [][2]string
			for _, tr := range so.Spec.Triggers {
				if tr.Type != "nats-jetstream" {
					t.Errorf("trigger type %s; want nats-jetstream", tr.Type)
					continue
				}
				md := tr.Metadata
				got = append(got, [2]string{md["stream"], md["consumer"]})
				host, port, _ := strings.Cut(md["natsServerMonitoringEndpoint"], ":")
				svc, _, _ := strings.Cut(host, ".")
				if s := m.services[svc]; s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone || !m.servicePort(svc, port) {
					t.Errorf("natsServerMonitoringEndpoint %s is not the headless NATS Service's monitoring port (the scaler asks the consumer's leader through it)", md["natsServerMonitoringEndpoint"])
				}
				if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
					t.Errorf("lagThreshold %q is not a positive integer", md["lagThreshold"])
				}
				if md["accountID"] == "" {
					t.Error("no accountID (the pipeline's account's public key: the monitoring endpoint finds an account by it)")
				}
			}
			if want := stageConsumers[name]; !slices.Equal(got, want) {
				t.Errorf("triggers on %v; want the stage's consumers %v", got, want)
			}
		})
	}
	readme := string(readFile(t, "README.md")) + string(readFile(t, "deploy/k8s/README.md"))
	if !strings.Contains(readme, "overlays/autoscaling") || !strings.Contains(readme, "components/keda") {
		t.Error("README.md and deploy/k8s/README.md do not say how to enable autoscaling (overlays/autoscaling, components/keda)")
	}
}
