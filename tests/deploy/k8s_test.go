package deploy_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/config"
)

// The kustomization roots marketpipe ships; each must build into a coherent set of objects.
var k8sRoots = []string{"deploy/k8s", "deploy/k8s/base", "deploy/k8s/overlays/dev"}

const namespace = "marketpipe"

// kinds lists the kinds the manifests may use, with their apiVersion, and whether they are
// namespaced.
var kinds = map[string]struct {
	apiVersion string
	namespaced bool
}{
	"Namespace":           {"v1", false},
	"ConfigMap":           {"v1", true},
	"Secret":              {"v1", true},
	"Service":             {"v1", true},
	"ServiceAccount":      {"v1", true},
	"Deployment":          {"apps/v1", true},
	"StatefulSet":         {"apps/v1", true},
	"Job":                 {"batch/v1", true},
	"CronJob":             {"batch/v1", true},
	"PodDisruptionBudget": {"policy/v1", true},
	"NetworkPolicy":       {"networking.k8s.io/v1", true},
}

// object is one Kubernetes object after the kustomization has been applied.
type object struct {
	kind, name, namespace string
	generated             bool // from a configMapGenerator or secretGenerator
	source                string
	doc                   map[string]any
}

func (o object) String() string { return fmt.Sprintf("%s/%s (%s)", o.kind, o.name, o.source) }

// objectSet is what a kustomization root builds.
type objectSet struct {
	root    string
	objects []object
	images  []string // kustomize image names
}

func (s objectSet) find(kind, name string) *object {
	for i := range s.objects {
		if s.objects[i].kind == kind && s.objects[i].name == name {
			return &s.objects[i]
		}
	}
	return nil
}

func (s objectSet) ofKind(kinds ...string) []object {
	var out []object
	for _, o := range s.objects {
		if contains(kinds, o.kind) {
			out = append(out, o)
		}
	}
	return out
}

var kustomizationKeys = map[string]bool{
	"apiVersion": true, "kind": true, "namespace": true, "resources": true, "patches": true,
	"images": true, "labels": true, "configMapGenerator": true, "secretGenerator": true,
	"generatorOptions": true, "components": true, "replicas": true,
}

// kustomize builds a kustomization root the way `kubectl kustomize` does, for the features the
// manifests use: resources (files and directories holding a kustomization), patches merged
// into their target, configMap and secret generators, namespace, images. Anything else is an
// error, so a feature added to the manifests is added here too.
func kustomize(t *testing.T, rel string) objectSet {
	t.Helper()
	b := readFile(t, rel+"/kustomization.yaml")
	docs, err := decodeDocs(b)
	if err != nil || len(docs) != 1 {
		t.Fatalf("%s/kustomization.yaml: %v (%d documents)", rel, err, len(docs))
	}
	k := docs[0]
	if strAt(k, "apiVersion") != "kustomize.config.k8s.io/v1beta1" || strAt(k, "kind") != "Kustomization" {
		t.Errorf("%s/kustomization.yaml: apiVersion/kind %s/%s", rel, strAt(k, "apiVersion"), strAt(k, "kind"))
	}
	for key := range k {
		if !kustomizationKeys[key] {
			t.Errorf("%s/kustomization.yaml: key %q is not handled by this test's kustomize", rel, key)
		}
	}
	set := objectSet{root: rel}
	for _, r := range stringList(at(k, "resources")) {
		p := filepath.ToSlash(filepath.Clean(rel + "/" + r))
		fi, err := os.Stat(path(t, p))
		if err != nil {
			t.Errorf("%s: resource %s: %v", rel, r, err)
			continue
		}
		if fi.IsDir() {
			if !exists(t, p+"/kustomization.yaml") {
				t.Errorf("%s: resource directory %s has no kustomization.yaml", rel, r)
				continue
			}
			if strings.HasPrefix(path(t, rel), path(t, p)+string(filepath.Separator)) {
				t.Errorf("%s: resource %s contains the kustomization itself (kustomize refuses the cycle)", rel, r)
				continue
			}
			sub := kustomize(t, p)
			set.objects = append(set.objects, sub.objects...)
			for _, name := range sub.images {
				if !contains(set.images, name) {
					set.images = append(set.images, name)
				}
			}
			continue
		}
		docs, err := decodeDocs(readFile(t, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		for i, d := range docs {
			set.objects = append(set.objects, object{
				kind: strAt(d, "kind"), name: strAt(d, "metadata", "name"),
				namespace: strAt(d, "metadata", "namespace"),
				source:    fmt.Sprintf("%s#%d", p, i+1), doc: d,
			})
		}
	}
	for _, gen := range []struct{ key, kind string }{{"configMapGenerator", "ConfigMap"}, {"secretGenerator", "Secret"}} {
		for _, g := range listAt(k, gen.key) {
			name := strAt(g, "name")
			data := map[string]any{}
			for _, f := range stringList(at(g, "files")) {
				key, file, ok := strings.Cut(f, "=")
				if !ok {
					file, key = key, filepath.Base(key)
				}
				p := filepath.ToSlash(filepath.Clean(rel + "/" + file))
				if !strings.HasPrefix(p, rel+"/") {
					t.Errorf("%s: %s %s: file %s is outside the kustomization root", rel, gen.key, name, file)
				}
				b, err := os.ReadFile(path(t, p))
				if err != nil {
					t.Errorf("%s: %s %s: %v", rel, gen.key, name, err)
				}
				data[key] = string(b)
			}
			for _, l := range stringList(at(g, "literals")) {
				key, v, _ := strings.Cut(l, "=")
				data[key] = v
			}
			set.objects = append(set.objects, object{
				kind: gen.kind, name: name, generated: true, source: rel + " " + gen.key,
				doc: map[string]any{"apiVersion": "v1", "kind": gen.kind, "metadata": map[string]any{"name": name}, "data": data},
			})
		}
	}
	for _, p := range listAt(k, "patches") {
		file := strAt(p, "path")
		if file == "" {
			t.Errorf("%s: only file patches (path:) are handled", rel)
			continue
		}
		docs, err := decodeDocs(readFile(t, rel+"/"+file))
		if err != nil || len(docs) != 1 {
			t.Errorf("%s: patch %s: %v", rel, file, err)
			continue
		}
		kind, name := strAt(docs[0], "kind"), strAt(docs[0], "metadata", "name")
		target := set.find(kind, name)
		if target == nil {
			t.Errorf("%s: patch %s targets %s/%s, which is not among the resources", rel, file, kind, name)
			continue
		}
		target.doc = merge(target.doc, docs[0]).(map[string]any)
	}
	if ns := strAt(k, "namespace"); ns != "" {
		for i := range set.objects {
			if kinds[set.objects[i].kind].namespaced {
				set.objects[i].namespace = ns
			}
		}
	}
	for _, img := range listAt(k, "images") {
		if name := strAt(img, "name"); !contains(set.images, name) {
			set.images = append(set.images, name)
		}
	}
	return set
}

// merge overlays patch on base: mappings merge key by key, anything else is replaced. (The
// manifests' patches touch mappings only; kustomize's strategic merge agrees there.)
func merge(base, patch any) any {
	bm, ok1 := base.(map[string]any)
	pm, ok2 := patch.(map[string]any)
	if !ok1 || !ok2 {
		return patch
	}
	out := map[string]any{}
	for k, v := range bm {
		out[k] = v
	}
	for k, v := range pm {
		out[k] = merge(bm[k], v)
	}
	return out
}

// podSpec returns a workload's pod template and spec.
func podTemplate(o object) map[string]any {
	switch o.kind {
	case "Deployment", "StatefulSet", "Job":
		return mapAt(o.doc, "spec", "template")
	case "CronJob":
		return mapAt(o.doc, "spec", "jobTemplate", "spec", "template")
	}
	return nil
}

func containers(o object) []map[string]any {
	var out []map[string]any
	for _, key := range []string{"initContainers", "containers"} {
		for _, c := range listAt(podTemplate(o), "spec", key) {
			if m, ok := c.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// labelsMatch reports whether every selector label is on labels.
func labelsMatch(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// readme is deploy/k8s/README.md, where Secrets created out of band are documented.
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

// resolves checks that a reference from o to a ConfigMap or Secret (and key, when given)
// exists: defined in the set, or, for a Secret, documented as created out of band.
func checkRef(t *testing.T, s objectSet, from object, kind, name, key string) {
	t.Helper()
	target := s.find(kind, name)
	switch {
	case target == nil && kind == "Secret":
		if !documentedSecret(t, name, key) {
			t.Errorf("%s: Secret %s (key %q) is neither defined nor documented in deploy/k8s/README.md", from, name, key)
		}
	case target == nil:
		t.Errorf("%s: %s %s is not defined", from, kind, name)
	case key != "":
		_, inData := mapAt(target.doc, "data")[key]
		_, inString := mapAt(target.doc, "stringData")[key]
		if !inData && !inString {
			t.Errorf("%s: %s %s has no key %s", from, kind, name, key)
		}
	}
}

func TestKustomizeRoots(t *testing.T) {
	for _, root := range k8sRoots {
		t.Run(root, func(t *testing.T) {
			s := kustomize(t, root)
			if len(s.objects) == 0 {
				t.Fatal("builds no object")
			}
			seen := map[string]string{}
			for _, o := range s.objects {
				k, known := kinds[o.kind]
				switch {
				case o.kind == "" || strAt(o.doc, "apiVersion") == "" || o.name == "":
					t.Errorf("%s: missing apiVersion, kind or metadata.name", o)
				case !known:
					t.Errorf("%s: kind %s is not one the manifests should need", o, o.kind)
				case strAt(o.doc, "apiVersion") != k.apiVersion:
					t.Errorf("%s: apiVersion %s; want %s", o, strAt(o.doc, "apiVersion"), k.apiVersion)
				}
				if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(o.name) || len(o.name) > 63 {
					t.Errorf("%s: name is not a DNS label", o)
				}
				if known && k.namespaced && o.namespace != namespace {
					t.Errorf("%s: namespace %q; want %s", o, o.namespace, namespace)
				}
				id := o.kind + "/" + o.name
				if prev, dup := seen[id]; dup {
					t.Errorf("%s is defined twice: %s and %s", id, prev, o.source)
				}
				seen[id] = o.source
			}
			if s.find("Namespace", namespace) == nil {
				t.Errorf("no Namespace %s", namespace)
			}
		})
	}
}

// TestKubectlKustomizeAgrees builds each root with the real kustomize, when kubectl is
// installed, and checks it yields the same objects as this package's reading of the files.
func TestKubectlKustomizeAgrees(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the structural checks above stand alone")
	}
	for _, root := range k8sRoots {
		t.Run(root, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", path(t, root)).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", root, err, out)
			}
			docs, err := decodeDocs(out)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, d := range docs {
				name := strAt(d, "metadata", "name")
				got = append(got, strAt(d, "kind")+"/"+name)
			}
			for _, o := range kustomize(t, root).objects {
				id := o.kind + "/" + o.name
				if o.generated { // kustomize appends a content hash
					for _, g := range got {
						if strings.HasPrefix(g, id+"-") {
							id = g
						}
					}
				}
				want = append(want, id)
			}
			sort.Strings(got)
			sort.Strings(want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("kubectl kustomize builds\n  %v\nthis test reads\n  %v", got, want)
			}
			for _, d := range docs {
				for _, c := range listAt(d, "spec", "template", "spec", "containers") {
					if img := strAt(c, "image"); strings.HasPrefix(img, "marketpipe") && !strings.Contains(img, ":") {
						t.Errorf("%s: image %s has no tag after kustomize's images transform", strAt(d, "metadata", "name"), img)
					}
				}
			}
		})
	}
}

func TestK8sWorkloads(t *testing.T) {
	for _, root := range k8sRoots {
		s := kustomize(t, root)
		for _, o := range s.ofKind("Deployment", "StatefulSet", "Job", "CronJob") {
			t.Run(root+"/"+o.kind+"/"+o.name, func(t *testing.T) {
				checkWorkload(t, s, o)
			})
		}
	}
}

// checkWorkload holds for every workload: selectors, references, restricted Pod Security.
func checkWorkload(t *testing.T, s objectSet, o object) {
	tmpl := podTemplate(o)
	labels := mapAt(tmpl, "metadata", "labels")
	if o.kind != "Job" && o.kind != "CronJob" {
		if sel := mapAt(o.doc, "spec", "selector", "matchLabels"); !labelsMatch(sel, labels) {
			t.Errorf("selector %v does not match the pod template's labels %v", sel, labels)
		}
	}
	pod := mapAt(tmpl, "spec")
	if len(containers(o)) == 0 {
		t.Fatal("no containers")
	}
	volumes := map[string]map[string]any{}
	for _, v := range listAt(pod, "volumes") {
		volumes[strAt(v, "name")] = v.(map[string]any)
		if cm := strAt(v, "configMap", "name"); cm != "" {
			checkRef(t, s, o, "ConfigMap", cm, "")
		}
		if sec := strAt(v, "secret", "secretName"); sec != "" {
			for _, item := range listAt(v, "secret", "items") {
				checkRef(t, s, o, "Secret", sec, strAt(item, "key"))
			}
			if len(listAt(v, "secret", "items")) == 0 {
				checkRef(t, s, o, "Secret", sec, "")
			}
		}
	}
	for _, c := range listAt(o.doc, "spec", "volumeClaimTemplates") {
		volumes[strAt(c, "metadata", "name")] = nil
	}
	if o.kind == "StatefulSet" {
		svc := s.find("Service", strAt(o.doc, "spec", "serviceName"))
		if svc == nil {
			t.Errorf("serviceName %q is not a Service", strAt(o.doc, "spec", "serviceName"))
		}
	}
	for _, c := range containers(o) {
		cname := strAt(c, "name")
		if strAt(c, "image") == "" {
			t.Errorf("container %s: no image", cname)
		}
		ports := map[string]int{}
		for _, p := range listAt(c, "ports") {
			n, _ := intAt(p, "containerPort")
			if name := strAt(p, "name"); name != "" {
				ports[name] = n
			}
		}
		for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
			for _, handler := range []string{"httpGet", "tcpSocket"} {
				port := at(c, probe, handler, "port")
				if name, ok := port.(string); ok {
					if _, ok := ports[name]; !ok {
						t.Errorf("container %s: %s port %q is not a named container port", cname, probe, name)
					}
				}
			}
		}
		for _, m := range listAt(c, "volumeMounts") {
			if _, ok := volumes[strAt(m, "name")]; !ok {
				t.Errorf("container %s: volumeMount %s has no volume", cname, strAt(m, "name"))
			}
		}
		for _, e := range listAt(c, "envFrom") {
			if cm := strAt(e, "configMapRef", "name"); cm != "" {
				checkRef(t, s, o, "ConfigMap", cm, "")
			}
			if sec := strAt(e, "secretRef", "name"); sec != "" {
				checkRef(t, s, o, "Secret", sec, "")
			}
		}
		for _, e := range listAt(c, "env") {
			vf := mapAt(e, "valueFrom")
			switch {
			case vf == nil:
			case mapAt(vf, "configMapKeyRef") != nil:
				checkRef(t, s, o, "ConfigMap", strAt(vf, "configMapKeyRef", "name"), strAt(vf, "configMapKeyRef", "key"))
			case mapAt(vf, "secretKeyRef") != nil:
				checkRef(t, s, o, "Secret", strAt(vf, "secretKeyRef", "name"), strAt(vf, "secretKeyRef", "key"))
			case mapAt(vf, "resourceFieldRef") != nil:
				if cn := strAt(vf, "resourceFieldRef", "containerName"); cn != "" && cn != cname {
					t.Errorf("container %s: env %s reads the resources of container %s", cname, strAt(e, "name"), cn)
				}
			case mapAt(vf, "fieldRef") != nil:
			default:
				t.Errorf("container %s: env %s: unknown valueFrom", cname, strAt(e, "name"))
			}
			if v := strAt(e, "value"); secretName.MatchString(strAt(e, "name")) && v != "" {
				t.Errorf("container %s: env %s has a literal value", cname, strAt(e, "name"))
			}
		}
		// The namespace enforces the restricted Pod Security Standard.
		sc := func(key string) any {
			if v := at(c, "securityContext", key); v != nil {
				return v
			}
			return at(pod, "securityContext", key)
		}
		if sc("runAsNonRoot") != true {
			t.Errorf("container %s: runAsNonRoot is not true", cname)
		}
		if at(c, "securityContext", "allowPrivilegeEscalation") != false {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", cname)
		}
		if !contains(stringList(at(c, "securityContext", "capabilities", "drop")), "ALL") {
			t.Errorf("container %s: capabilities.drop does not include ALL", cname)
		}
		if strAt(sc("seccompProfile"), "type") != "RuntimeDefault" {
			t.Errorf("container %s: seccompProfile is not RuntimeDefault", cname)
		}
		if u, ok := sc("runAsUser").(int); ok && u == 0 {
			t.Errorf("container %s: runAsUser 0", cname)
		}
		if strAt(c, "resources", "requests", "memory") == "" || strAt(c, "resources", "limits", "memory") == "" {
			t.Errorf("container %s: no memory request and limit", cname)
		}
	}
}

// marketpipeContainers returns the containers that run the marketpipe image.
func marketpipeContainers(s objectSet, o object) []map[string]any {
	var out []map[string]any
	for _, c := range containers(o) {
		img := strAt(c, "image")
		for _, name := range s.images {
			if img == name || strings.HasPrefix(img, name+":") {
				out = append(out, c)
			}
		}
	}
	return out
}

// env returns the environment a container sees: its envFrom ConfigMaps' keys and its own env
// (values from the ConfigMaps; "" for values from Secrets and fields).
func containerEnv(s objectSet, c map[string]any) map[string]string {
	env := map[string]string{}
	for _, e := range listAt(c, "envFrom") {
		if cm := s.find("ConfigMap", strAt(e, "configMapRef", "name")); cm != nil {
			for k := range mapAt(cm.doc, "data") {
				env[k] = strAt(cm.doc, "data", k)
			}
		}
	}
	for _, e := range listAt(c, "env") {
		env[strAt(e, "name")] = strAt(e, "value")
	}
	return env
}

func TestK8sMarketpipe(t *testing.T) {
	for _, root := range k8sRoots {
		s := kustomize(t, root)
		t.Run(root, func(t *testing.T) {
			if len(s.images) != 1 || s.images[0] != "marketpipe" {
				t.Errorf("kustomize images %v; want the one marketpipe image", s.images)
			}
			cfg := s.find("ConfigMap", "marketpipe-config")
			if cfg == nil {
				t.Fatal("no ConfigMap marketpipe-config")
			}
			for k := range mapAt(cfg.doc, "data") {
				if !knownVar("", k) {
					t.Errorf("ConfigMap key %s is not a variable a service reads", k)
				}
				if secretName.MatchString(k) {
					t.Errorf("ConfigMap key %s is a secret: put it in a Secret", k)
				}
			}
			natsURL, err := url.Parse(strAt(cfg.doc, "data", "NATS_URL"))
			if err != nil || !servicePort(s, natsURL.Hostname(), natsURL.Port()) {
				t.Errorf("NATS_URL %q is not a Service and port in the manifests", strAt(cfg.doc, "data", "NATS_URL"))
			}
			ran := map[string]bool{}
			for _, o := range s.ofKind("Deployment", "StatefulSet", "Job") {
				for _, c := range marketpipeContainers(s, o) {
					cmd := stringList(at(c, "command"))
					if len(cmd) == 0 || !strings.HasPrefix(cmd[0], binDir) {
						t.Errorf("%s: command %q does not start with %s<binary>", o, cmd, binDir)
						continue
					}
					program := strings.TrimPrefix(cmd[0], binDir)
					if _, ok := binaries[program]; !ok {
						t.Errorf("%s: runs %s, which the Dockerfile does not build", o, program)
					}
					if program == "marketpipe" && len(cmd) > 1 {
						program = cmd[1] // marketpipe migrate
					}
					ran[program] = true
					env := containerEnv(s, c)
					for _, k := range requiredEnv(program) {
						if _, ok := env[k]; !ok {
							t.Errorf("%s: %s is not set", o, k)
						}
					}
					if vendorStages[program] {
						checkMountedFile(t, o, c, env["VENDOR_CREDENTIALS"])
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
func checkMountedFile(t *testing.T, o object, c map[string]any, file string) {
	t.Helper()
	for _, m := range listAt(c, "volumeMounts") {
		dir := strAt(m, "mountPath")
		rel, ok := strings.CutPrefix(file, dir+"/")
		if !ok {
			continue
		}
		for _, v := range listAt(podTemplate(o), "spec", "volumes") {
			if strAt(v, "name") != strAt(m, "name") {
				continue
			}
			items := listAt(v, "secret", "items")
			if len(items) == 0 {
				return
			}
			for _, it := range items {
				if strAt(it, "path") == rel {
					return
				}
			}
			t.Errorf("%s: %s is mounted at %s but no item of its Secret is %s", o, strAt(m, "name"), dir, rel)
			return
		}
	}
	t.Errorf("%s: %q is not inside any volume mounted into %s", o, file, strAt(c, "name"))
}

// servicePort reports whether a Service named host exposes port.
func servicePort(s objectSet, host, port string) bool {
	svc := s.find("Service", host)
	if svc == nil {
		return false
	}
	for _, p := range listAt(svc.doc, "spec", "ports") {
		if strAt(p, "port") == port {
			return true
		}
	}
	return false
}

func TestK8sStages(t *testing.T) {
	for _, root := range k8sRoots {
		s := kustomize(t, root)
		cfg := s.find("ConfigMap", "marketpipe-config")
		for _, name := range stages {
			t.Run(root+"/"+name, func(t *testing.T) {
				d := s.find("Deployment", name)
				if d == nil {
					t.Fatalf("no Deployment %s", name)
				}
				if n, _ := intAt(d.doc, "spec", "replicas"); n < 2 {
					t.Errorf("replicas %d; want at least 2", n)
				}
				pod := mapAt(podTemplate(*d), "spec")
				if n, _ := intAt(pod, "terminationGracePeriodSeconds"); n != 60 {
					t.Errorf("terminationGracePeriodSeconds %d; want 60 to drain in-flight messages", n)
				}
				if at(pod, "securityContext", "runAsNonRoot") != true {
					t.Error("pod securityContext.runAsNonRoot is not true")
				}
				mp := marketpipeContainers(s, *d)
				if len(mp) != 1 {
					t.Fatalf("%d marketpipe containers; want 1", len(mp))
				}
				c := mp[0]
				if cmd := stringList(at(c, "command")); len(cmd) != 1 || cmd[0] != binDir+name {
					t.Errorf("command %q; want [%s%s]", cmd, binDir, name)
				}
				httpPort := 0
				for _, p := range listAt(c, "ports") {
					if strAt(p, "name") == "http" {
						httpPort, _ = intAt(p, "containerPort")
					}
				}
				if httpPort != 8080 {
					t.Errorf("container port http = %d; want 8080", httpPort)
				}
				if addr := containerEnv(s, c)["HTTP_ADDR"]; addr != "" && addr != ":8080" {
					t.Errorf("HTTP_ADDR %q does not serve on the http port 8080", addr)
				}
				for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
					if got := strAt(c, probe, "httpGet", "path"); got != want {
						t.Errorf("%s path %q; want %s", probe, got, want)
					}
					if got := strAt(c, probe, "httpGet", "port"); got != "http" {
						t.Errorf("%s port %q; want the named port http", probe, got)
					}
				}
				ann := mapAt(podTemplate(*d), "metadata", "annotations")
				if strAt(ann, "prometheus.io/scrape") != "true" || strAt(ann, "prometheus.io/port") != "8080" || strAt(ann, "prometheus.io/path") != "/metrics" {
					t.Errorf("Prometheus annotations %v; want scrape true, port 8080, path /metrics", ann)
				}
				sc := mapAt(c, "securityContext")
				if sc["readOnlyRootFilesystem"] != true {
					t.Error("readOnlyRootFilesystem is not true")
				}
				if strAt(c, "resources", "requests", "cpu") == "" {
					t.Error("no cpu request")
				}
				lim, err := quantity(strAt(c, "resources", "limits", "memory"))
				if err != nil {
					t.Error(err)
				}
				if wideStages[name] && lim != 512<<20 {
					t.Errorf("memory limit %s; want 512Mi", strAt(c, "resources", "limits", "memory"))
				}
				pdbs := 0
				for _, p := range s.ofKind("PodDisruptionBudget") {
					if labelsMatch(mapAt(p.doc, "spec", "selector", "matchLabels"), mapAt(podTemplate(*d), "metadata", "labels")) {
						pdbs++
						if n, _ := intAt(p.doc, "spec", "minAvailable"); n != 1 {
							t.Errorf("%s: minAvailable %v; want 1", p, at(p.doc, "spec", "minAvailable"))
						}
					}
				}
				if pdbs != 1 {
					t.Errorf("%d PodDisruptionBudgets select %s; want 1", pdbs, name)
				}
				if cfg != nil && vendorStages[name] {
					if strAt(cfg.doc, "data", "VENDOR_URL") == "" {
						t.Error("VENDOR_URL is empty")
					}
				}
			})
		}
	}
}

func TestK8sSelectors(t *testing.T) {
	for _, root := range k8sRoots {
		s := kustomize(t, root)
		workloads := s.ofKind("Deployment", "StatefulSet")
		selects := func(sel map[string]any) []object {
			var out []object
			for _, w := range workloads {
				if labelsMatch(sel, mapAt(podTemplate(w), "metadata", "labels")) {
					out = append(out, w)
				}
			}
			return out
		}
		for _, p := range s.ofKind("PodDisruptionBudget") {
			t.Run(root+"/"+p.kind+"/"+p.name, func(t *testing.T) {
				if len(selects(mapAt(p.doc, "spec", "selector", "matchLabels"))) == 0 {
					t.Error("selects no Deployment or StatefulSet")
				}
				if at(p.doc, "spec", "minAvailable") == nil && at(p.doc, "spec", "maxUnavailable") == nil {
					t.Error("neither minAvailable nor maxUnavailable")
				}
			})
		}
		for _, svc := range s.ofKind("Service") {
			t.Run(root+"/"+svc.kind+"/"+svc.name, func(t *testing.T) {
				ws := selects(mapAt(svc.doc, "spec", "selector"))
				if len(ws) == 0 {
					t.Fatal("selects no workload")
				}
				for _, p := range listAt(svc.doc, "spec", "ports") {
					target, ok := at(p, "targetPort").(string)
					if !ok {
						continue
					}
					for _, w := range ws {
						found := false
						for _, c := range containers(w) {
							for _, cp := range listAt(c, "ports") {
								found = found || strAt(cp, "name") == target
							}
						}
						if !found {
							t.Errorf("targetPort %s is not a named port of %s", target, w)
						}
					}
				}
			})
		}
	}
}

func TestK8sMigrateJob(t *testing.T) {
	s := kustomize(t, "deploy/k8s/base")
	var jobs []object
	for _, j := range s.ofKind("Job") {
		for _, c := range marketpipeContainers(s, j) {
			if fmt.Sprint(stringList(at(c, "command"))) == fmt.Sprint([]string{binDir + "marketpipe", "migrate"}) {
				jobs = append(jobs, j)
			}
		}
	}
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs run marketpipe migrate; want 1", len(jobs))
	}
	if rp := strAt(podTemplate(jobs[0]), "spec", "restartPolicy"); rp != "OnFailure" && rp != "Never" {
		t.Errorf("restartPolicy %q", rp)
	}
	if n, ok := intAt(jobs[0].doc, "spec", "backoffLimit"); !ok || n < 3 {
		t.Errorf("backoffLimit %d: ClickHouse may not be up yet, retry", n)
	}
}

func TestK8sNATS(t *testing.T) {
	s := kustomize(t, "deploy/k8s/base")
	sts := s.find("StatefulSet", "nats")
	if sts == nil {
		t.Fatal("no StatefulSet nats")
	}
	replicas, _ := intAt(sts.doc, "spec", "replicas")
	if replicas != 3 {
		t.Errorf("replicas %d; want 3 (a JetStream quorum survives one loss)", replicas)
	}
	headless := s.find("Service", strAt(sts.doc, "spec", "serviceName"))
	if headless == nil || strAt(headless.doc, "spec", "clusterIP") != "None" {
		t.Fatalf("serviceName %q is not a headless Service", strAt(sts.doc, "spec", "serviceName"))
	}
	if at(headless.doc, "spec", "publishNotReadyAddresses") != true {
		t.Error("the headless Service does not publish not-ready addresses: routes could not resolve while the cluster forms")
	}
	if len(listAt(sts.doc, "spec", "volumeClaimTemplates")) == 0 {
		t.Error("no volumeClaimTemplates: JetStream's files would not survive a restart")
	}
	containers := containers(*sts)
	if len(containers) != 1 {
		t.Fatalf("%d containers", len(containers))
	}
	c := containers[0]
	if img := strAt(c, "image"); !strings.HasPrefix(img, "nats:2.11") {
		t.Errorf("image %s; want nats:2.11", img)
	}
	args := stringList(at(c, "args"))
	i := indexOf(args, "--config")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("args %q do not pass --config", args)
	}
	confPath := args[i+1]
	var confText string
	for _, m := range listAt(c, "volumeMounts") {
		if !strings.HasPrefix(confPath, strAt(m, "mountPath")+"/") {
			continue
		}
		for _, v := range listAt(podTemplate(*sts), "spec", "volumes") {
			if strAt(v, "name") == strAt(m, "name") {
				cm := s.find("ConfigMap", strAt(v, "configMap", "name"))
				if cm != nil {
					confText = strAt(cm.doc, "data", filepath.Base(confPath))
				}
			}
		}
	}
	if confText == "" {
		t.Fatalf("%s is not a key of a ConfigMap mounted into the nats container", confPath)
	}
	env := map[string]string{}
	for _, e := range listAt(c, "env") {
		if strAt(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name" {
			env[strAt(e, "name")] = "nats-1"
		}
	}
	opts := natsOptionsFromText(t, confText, env)
	checkJetStream(t, opts)
	if opts.ServerName != "nats-1" {
		t.Errorf("server_name %q; want the pod name, from the environment", opts.ServerName)
	}
	ports := map[string]int{}
	for _, p := range listAt(c, "ports") {
		ports[strAt(p, "name")], _ = intAt(p, "containerPort")
	}
	for name, want := range map[string]int{"client": opts.Port, "cluster": opts.Cluster.Port, "monitor": opts.HTTPPort} {
		if ports[name] != want {
			t.Errorf("container port %s = %d; the configuration listens on %d", name, ports[name], want)
		}
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	var want []string
	for i := range replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.name, i, headless.name, opts.Cluster.Port))
	}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("routes %v; want one per replica %v", routes, want)
	}
	onVolume := false
	for _, m := range listAt(c, "volumeMounts") {
		for _, vct := range listAt(sts.doc, "spec", "volumeClaimTemplates") {
			if strAt(m, "name") == strAt(vct, "metadata", "name") && strings.HasPrefix(opts.StoreDir, strAt(m, "mountPath")+"/") {
				onVolume = true
			}
		}
	}
	if !onVolume {
		t.Errorf("store_dir %s is not on the volume claim", opts.StoreDir)
	}
	pid := strings.Join(stringList(at(c, "lifecycle", "preStop", "exec", "command")), " ")
	if !strings.Contains(pid, "ldm="+opts.PidFile) {
		t.Errorf("preStop %q does not put the server at pid_file %s in lame duck mode", pid, opts.PidFile)
	}

	// The services replicate every stream on every node, within each node's file budget.
	cfg := s.find("ConfigMap", "marketpipe-config")
	if cfg == nil {
		t.Fatal("no ConfigMap marketpipe-config")
	}
	lookup := func(k string) (string, bool) { v, ok := mapAt(cfg.doc, "data")[k].(string); return v, ok }
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
	for _, o := range s.ofKind("Deployment", "StatefulSet", "Job") {
		for _, c := range marketpipeContainers(s, o) {
			if env := containerEnv(s, c); env["NATS_REPLICAS"] != strconv.Itoa(replicas) {
				t.Errorf("%s: NATS_REPLICAS %q", o, env["NATS_REPLICAS"])
			}
		}
	}
}

func TestK8sDevOverlay(t *testing.T) {
	s := kustomize(t, "deploy/k8s/overlays/dev")
	cfg := s.find("ConfigMap", "marketpipe-config")
	if cfg == nil {
		t.Fatal("no ConfigMap marketpipe-config")
	}
	u, err := url.Parse(strAt(cfg.doc, "data", "VENDOR_URL"))
	if err != nil || !servicePort(s, u.Hostname(), u.Port()) || u.Path != "/eap" {
		t.Errorf("VENDOR_URL %q is not the vendorsim Service's /eap", strAt(cfg.doc, "data", "VENDOR_URL"))
	}
	host, port, _ := strings.Cut(strAt(cfg.doc, "data", "CLICKHOUSE_ADDR"), ":")
	if !servicePort(s, host, port) {
		t.Errorf("CLICKHOUSE_ADDR %q is not a Service port", strAt(cfg.doc, "data", "CLICKHOUSE_ADDR"))
	}
	if ch := s.find("StatefulSet", "clickhouse"); ch == nil {
		t.Error("no ClickHouse StatefulSet")
	} else if n, _ := intAt(ch.doc, "spec", "replicas"); n != 1 {
		t.Errorf("ClickHouse replicas %d; want a single node", n)
	}
	sim := s.find("Deployment", "vendorsim")
	if sim == nil {
		t.Fatal("no vendorsim Deployment")
	}
	c := marketpipeContainers(s, *sim)
	if len(c) != 1 {
		t.Fatal("vendorsim does not run the marketpipe image")
	}
	cmd := stringList(at(c[0], "command"))
	if i := indexOf(cmd, "-addr"); i < 0 || !strings.HasSuffix(cmd[i+1], ":"+u.Port()) {
		t.Errorf("vendorsim command %q does not listen on VENDOR_URL's port %s", cmd, u.Port())
	}
	if i := indexOf(cmd, "-credentials"); i < 0 || cmd[i+1] != strAt(cfg.doc, "data", "VENDOR_CREDENTIALS") {
		t.Errorf("vendorsim command %q does not check the stages' credentials %s", cmd, strAt(cfg.doc, "data", "VENDOR_CREDENTIALS"))
	} else {
		checkMountedFile(t, *sim, c[0], cmd[i+1])
	}
}
