package deploy_test

import (
	cryptotls "crypto/tls"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/services"
)

// natsCredsSecret is the Secret holding identity's .creds (deploy/k8s/README.md, Secrets).
func natsCredsSecret(identity string) string { return "marketpipe-nats-" + identity }

// natsAuthSecret holds the server's include, nats-auth.conf.
const natsAuthSecret = "marketpipe-nats-auth"

// generatedSuffix is the content hash kustomize appends to a generated Secret's name.
var generatedSuffix = regexp.MustCompile(`-[a-z0-9]{10}$`)

// secretsOf lists every Secret a pod template refers to, however: volumes (plain and
// projected), env and envFrom of every container; a Secret the set generates by the name it was
// given, without kustomize's hash.
func (m *manifests) secretsOf(pod *corev1.PodTemplateSpec) []string {
	var out []string
	add := func(name string) {
		if m.secrets[name] != nil {
			name = generatedSuffix.ReplaceAllString(name, "")
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			add(v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					add(src.Secret.Name)
				}
			}
		}
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				add(e.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				add(e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestK8sCredentials checks that each program gets its own NATS identity and no other secret
// than it needs: each stage mounts its own .creds Secret only and NATS_CREDS points into it,
// migrate the admin's, nothing else the admin's, the operator's or the server's include.
func TestK8sCredentials(t *testing.T) {
	identities := map[string]bool{}
	for _, id := range services.Identities() {
		identities[id.Name] = true
	}
	for _, root := range k8sRoots {
		m := build(t, root)
		for _, w := range m.workloads() {
			mp := marketpipeContainers(w)
			if len(mp) == 0 {
				continue
			}
			t.Run(root+"/"+w.String(), func(t *testing.T) {
				c := mp[0]
				program := strings.TrimPrefix(c.Command[0], binDir)
				if program == "marketpipe" && len(c.Command) > 1 {
					program = c.Command[1]
				}
				identity := program
				if program == "migrate" {
					identity = auth.AdminName
				}
				var want []string // the Secrets this program may see
				switch {
				case program == "vendorsim":
					want = []string{"marketpipe-vendor-credentials"}
				case identities[identity]:
					want = append(want, natsCredsSecret(identity))
					if vendorStages[program] {
						want = append(want, "marketpipe-vendor-credentials")
					}
					if program == "loader" {
						want = append(want, "marketpipe-clickhouse-loader")
					}
					if program == "migrate" {
						want = append(want, "marketpipe-clickhouse-admin")
					}
					if c.Env != nil && envValue(c, "NATS_CERT") != "" {
						want = append(want, "marketpipe-nats-client-tls")
					}
				default:
					t.Fatalf("runs %s, which is no identity of services.Identities()", program)
				}
				slices.Sort(want)
				if got := m.secretsOf(w.template); !slices.Equal(got, want) {
					t.Errorf("refers to the Secrets %v; want exactly %v (its own only)", got, want)
				}
				if program == "vendorsim" {
					return
				}
				creds := envValue(c, "NATS_CREDS")
				if filepath.Base(creds) != auth.CredsFile(identity) {
					t.Errorf("NATS_CREDS %q; want its own %s", creds, auth.CredsFile(identity))
				}
				checkMountedFile(t, w, c, creds)
				checkSecretMode(t, w, creds)
				if u := envValue(c, "CLICKHOUSE_USER"); program == "loader" && u != "marketpipe_loader" || program == "migrate" && u != "marketpipe_admin" {
					t.Errorf("CLICKHOUSE_USER %q: the loader runs as marketpipe_loader, migrate as marketpipe_admin (docs/clickhouse-users.xml)", u)
				}
				if envValue(c, "LOADER_MIGRATE") != "" || m.containerEnv(c)["LOADER_MIGRATE"] != "" {
					t.Error("LOADER_MIGRATE is set: the migrate Job changes the schema, the loader never")
				}
				for _, k := range []string{"NATS_USER", "NATS_PASSWORD"} {
					if _, ok := m.containerEnv(c)[k]; ok {
						t.Errorf("%s is set: each program authenticates with its own NATS_CREDS", k)
					}
				}
			})
		}
		t.Run(root+"/nats", func(t *testing.T) {
			sts := m.statefulSets["nats"]
			if sts == nil {
				t.Fatal("no StatefulSet nats")
			}
			want := []string{natsAuthSecret}
			if root == "deploy/k8s/overlays/tls" {
				want = append(want, "marketpipe-nats-server-tls")
			}
			slices.Sort(want)
			if got := m.secretsOf(&sts.Spec.Template); !slices.Equal(got, want) {
				t.Errorf("the NATS servers refer to the Secrets %v; want %v", got, want)
			}
			for _, w := range m.workloads() {
				if w.name != "nats" && slices.Contains(m.secretsOf(w.template), natsAuthSecret) {
					t.Errorf("%s refers to %s, the servers' include", w, natsAuthSecret)
				}
			}
		})
	}
	// Every identity's Secret is documented as made from `marketpipe auth init`'s output.
	for id := range identities {
		if id == auth.OperatorName {
			continue // the CLI's: kept by whoever runs it, never in the cluster
		}
		if !documentedSecret(t, natsCredsSecret(id), auth.CredsFile(id)) {
			t.Errorf("deploy/k8s/README.md does not say how to create %s from %s", natsCredsSecret(id), auth.CredsFile(id))
		}
	}
	if !documentedSecret(t, natsAuthSecret, auth.ServerInclude) {
		t.Errorf("deploy/k8s/README.md does not say how to create %s from %s", natsAuthSecret, auth.ServerInclude)
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// checkSecretMode checks that the Secret volume holding file is mounted 0440 at most: readable
// by the pod's fsGroup, not by others.
func checkSecretMode(t *testing.T, w workload, file string) {
	t.Helper()
	for _, c := range w.template.Spec.Containers {
		for _, vm := range c.VolumeMounts {
			if !strings.HasPrefix(file, vm.MountPath+"/") {
				continue
			}
			for _, v := range w.template.Spec.Volumes {
				if v.Name != vm.Name || v.Secret == nil {
					continue
				}
				if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
					t.Errorf("%s: Secret %s mounted with mode %v: others could read it", w, v.Secret.SecretName, v.Secret.DefaultMode)
				}
				sc := w.template.Spec.SecurityContext
				if sc == nil || sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
					t.Errorf("%s: no fsGroup equal to runAsGroup: the program could not read its 0440 Secret", w)
				}
				return
			}
		}
	}
}

// TestK8sNATSAuth checks the servers' configuration with the include `marketpipe auth init`
// writes: decentralised auth (the operator, the memory resolver), the monitoring port off the
// client Service, and, with components/nats-tls, mutual TLS on client connections and routes
// with every marketpipe program given NATS_CA, NATS_CERT and NATS_KEY from its mounted Secret.
func TestK8sNATSAuth(t *testing.T) {
	for _, root := range k8sRoots {
		t.Run(root, func(t *testing.T) {
			m := build(t, root)
			sts := m.statefulSets["nats"]
			if sts == nil {
				t.Fatal("no StatefulSet nats")
			}
			opts := m.natsOptions(t, sts)
			if len(opts.TrustedOperators) != 1 {
				t.Errorf("%d trusted operators: the server does not include nats-auth.conf", len(opts.TrustedOperators))
			}
			if opts.SystemAccount == "" || opts.AccountResolver == nil {
				t.Error("no system account or resolver: the server does not include nats-auth.conf")
			}
			if opts.MaxControlLine < auth.MaxControlLine {
				t.Errorf("max_control_line %d; the identities' JWTs need %d", opts.MaxControlLine, auth.MaxControlLine)
			}
			if opts.NoAuthUser != "" || len(opts.Users) > 0 || len(opts.Nkeys) > 0 {
				t.Error("users besides the operator's: every client must be an identity of auth init")
			}
			cfg := m.configMaps["marketpipe-config"]
			u, err := url.Parse(cfg.Data["NATS_URL"])
			if err != nil {
				t.Fatal(err)
			}
			client := m.services[u.Hostname()]
			if client == nil {
				t.Fatalf("NATS_URL names no Service: %s", u)
			}
			for _, p := range client.Spec.Ports {
				if int(p.Port) == opts.HTTPPort || p.TargetPort.StrVal == "monitor" || p.TargetPort.IntValue() == opts.HTTPPort {
					t.Errorf("the client Service %s exposes the monitoring port %d (no auth): keep it on %s", client.Name, p.Port, sts.Spec.ServiceName)
				}
			}
			tls := root == "deploy/k8s/overlays/tls"
			if got := opts.TLSConfig != nil && opts.TLSConfig.ClientAuth == cryptotls.RequireAndVerifyClientCert; got != tls {
				t.Errorf("client mutual TLS %v; want %v", got, tls)
			}
			if got := opts.Cluster.TLSConfig != nil && opts.Cluster.TLSConfig.ClientAuth == cryptotls.RequireAndVerifyClientCert; got != tls {
				t.Errorf("route mutual TLS %v; want %v", got, tls)
			}
			for _, w := range m.workloads() {
				for _, c := range marketpipeContainers(w) {
					if strings.Contains(c.Command[0], "vendorsim") {
						continue
					}
					for _, k := range []string{"NATS_CA", "NATS_CERT", "NATS_KEY"} {
						f := envValue(c, k)
						if (f != "") != tls {
							t.Errorf("%s: %s %q with TLS %v", w, k, f, tls)
						}
						if f != "" {
							checkMountedFile(t, w, c, f)
							checkSecretMode(t, w, f)
						}
					}
				}
			}
		})
	}
}

// peerSelects reports whether a NetworkPolicy peer picks the pods of a template in the
// manifests' namespace (a peer with a namespaceSelector picks other namespaces' pods).
func peerSelects(p networkingv1.NetworkPolicyPeer, podLabels map[string]string) bool {
	if p.NamespaceSelector != nil || p.IPBlock != nil || p.PodSelector == nil {
		return false
	}
	if len(p.PodSelector.MatchLabels) == 0 && len(p.PodSelector.MatchExpressions) == 0 {
		return true
	}
	return selects(p.PodSelector, podLabels)
}

// applies reports whether a NetworkPolicy selects a pod template for policy type pt.
func applies(np *networkingv1.NetworkPolicy, pt networkingv1.PolicyType, podLabels map[string]string) bool {
	if !slices.Contains(np.Spec.PolicyTypes, pt) {
		return false
	}
	sel := np.Spec.PodSelector
	return (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) || selects(&sel, podLabels)
}

func rulePorts(ports []networkingv1.NetworkPolicyPort) []int {
	var out []int
	for _, p := range ports {
		if p.Port != nil {
			out = append(out, p.Port.IntValue())
		}
	}
	return out
}

// TestK8sNetworkPolicies checks that the NetworkPolicies allow only the traffic the pipeline
// uses: a default deny of both directions; every pod's egress to DNS; each stage's and
// migrate's egress to NATS's client port on the NATS pods only; ClickHouse's ports for the
// loader and migrate only; the vendor's port (VENDOR_URL's) for the requester, poller and
// collector only; NATS's routes between NATS pods only, its client port from the stages and
// migrate only, its monitoring port from KEDA only where KEDA is enabled.
func TestK8sNetworkPolicies(t *testing.T) {
	for _, root := range k8sRoots {
		t.Run(root, func(t *testing.T) {
			m := build(t, root)
			denyAll := false
			for _, np := range m.netpols {
				s := np.Spec
				if len(s.PodSelector.MatchLabels) == 0 && len(s.PodSelector.MatchExpressions) == 0 &&
					slices.Contains(s.PolicyTypes, networkingv1.PolicyTypeIngress) && slices.Contains(s.PolicyTypes, networkingv1.PolicyTypeEgress) &&
					len(s.Ingress) == 0 && len(s.Egress) == 0 {
					denyAll = true
				}
				picks := false
				for _, w := range m.workloads() {
					picks = picks || applies(np, networkingv1.PolicyTypeIngress, w.template.Labels) || applies(np, networkingv1.PolicyTypeEgress, w.template.Labels)
				}
				if !picks {
					t.Errorf("NetworkPolicy %s selects no workload", np.Name)
				}
				for _, r := range s.Egress {
					if len(r.Ports) == 0 {
						t.Errorf("NetworkPolicy %s: an egress rule without ports allows every port", np.Name)
					}
				}
			}
			if !denyAll {
				t.Fatal("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rule)")
			}
			sts := m.statefulSets["nats"]
			if sts == nil {
				t.Fatal("no StatefulSet nats")
			}
			natsLabels := sts.Spec.Template.Labels
			cfg := m.configMaps["marketpipe-config"]
			vendorPort := 443
			if u, err := url.Parse(cfg.Data["VENDOR_URL"]); err == nil && u.Port() != "" {
				vendorPort, _ = strconv.Atoi(u.Port())
			}
			_, chPortText, _ := strings.Cut(cfg.Data["CLICKHOUSE_ADDR"], ":")
			chPort, _ := strconv.Atoi(chPortText)

			for _, w := range m.workloads() {
				mp := marketpipeContainers(w)
				if len(mp) == 0 || strings.Contains(mp[0].Command[0], "vendorsim") {
					continue
				}
				program := strings.TrimPrefix(mp[0].Command[0], binDir)
				if program == "marketpipe" {
					program = mp[0].Command[1]
				}
				allowed := map[int]bool{53: true, 4222: true}
				needs := []int{53, 4222}
				if program == "loader" || program == "migrate" {
					allowed[9000], allowed[9440] = true, true
					needs = append(needs, chPort)
				}
				if vendorStages[program] {
					// The vendor's port (VENDOR_URL's, the simulator's in overlays/dev) and HTTPS's.
					allowed[vendorPort], allowed[443] = true, true
					needs = append(needs, vendorPort)
				}
				got := map[int]bool{}
				for _, np := range m.netpols {
					if !applies(np, networkingv1.PolicyTypeEgress, w.template.Labels) {
						continue
					}
					for _, r := range np.Spec.Egress {
						for _, port := range rulePorts(r.Ports) {
							got[port] = true
							if !allowed[port] {
								t.Errorf("%s: NetworkPolicy %s lets it reach port %d", w, np.Name, port)
							}
							if port == 4222 {
								for _, peer := range r.To {
									if !peerSelects(peer, natsLabels) {
										t.Errorf("%s: NetworkPolicy %s lets it reach port 4222 on pods other than NATS's", w, np.Name)
									}
								}
								if len(r.To) == 0 {
									t.Errorf("%s: NetworkPolicy %s lets it reach port 4222 anywhere", w, np.Name)
								}
							}
						}
					}
				}
				for _, p := range needs {
					if !got[p] {
						t.Errorf("%s: no NetworkPolicy lets it reach port %d, which it needs", w, p)
					}
				}
			}

			// The NATS pods: who may reach which port.
			keda := len(m.scaledObjects) > 0
			for _, np := range m.netpols {
				if !applies(np, networkingv1.PolicyTypeIngress, natsLabels) {
					continue
				}
				for _, r := range np.Spec.Ingress {
					if len(r.Ports) == 0 || len(r.From) == 0 {
						t.Errorf("NetworkPolicy %s: an ingress rule to NATS from anywhere or on every port", np.Name)
						continue
					}
					for _, port := range rulePorts(r.Ports) {
						for _, peer := range r.From {
							var ok bool
							switch port {
							case 4222:
								ok = peer.PodSelector != nil && peer.NamespaceSelector == nil && m.onlyClients(peer.PodSelector)
							case 6222:
								ok = peerSelects(peer, natsLabels) && !m.selectsOther(peer.PodSelector, "nats")
							case 8222:
								ok = keda && peer.NamespaceSelector != nil &&
									peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "keda"
							}
							if !ok {
								t.Errorf("NetworkPolicy %s lets %s reach NATS's port %d", np.Name, peerString(peer), port)
							}
						}
					}
				}
			}
		})
	}
}

// onlyClients reports whether a selector picks only the workloads that connect to NATS: the
// stages and migrate, and at least one of them.
func (m *manifests) onlyClients(sel *metav1.LabelSelector) bool {
	n := 0
	for _, w := range m.workloads() {
		if !selects(sel, w.template.Labels) {
			continue
		}
		mp := marketpipeContainers(w)
		if len(mp) == 0 || strings.Contains(mp[0].Command[0], "vendorsim") {
			return false
		}
		n++
	}
	return n > 0
}

// selectsOther reports whether a selector picks a workload other than name.
func (m *manifests) selectsOther(sel *metav1.LabelSelector, name string) bool {
	for _, w := range m.workloads() {
		if w.name != name && selects(sel, w.template.Labels) {
			return true
		}
	}
	return false
}

func peerString(p networkingv1.NetworkPolicyPeer) string {
	return fmt.Sprintf("{pods %v, namespaces %v, ipBlock %v}", p.PodSelector, p.NamespaceSelector, p.IPBlock)
}
