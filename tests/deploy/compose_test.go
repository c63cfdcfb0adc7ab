package deploy_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/marketpipe/marketpipe/pkg/auth"
)

const composeFile = "docker-compose.yml"

// loadCompose loads docker-compose.yml with the Compose specification's own loader
// (interpolation, merge keys, validation against the schema, normalization) and the variables
// env; nothing of the caller's environment or of an .env file is read. All profiles are on.
func loadCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{path(t, composeFile)},
		cli.WithWorkingDirectory(repoRoot(t)), cli.WithName("marketpipe"), cli.WithEnv(env),
		cli.WithDiscardEnvFile, cli.WithProfiles([]string{"*"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-go: %s: %v", composeFile, err)
	}
	return p
}

func svcOf(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("service %s is missing", name)
	}
	return s
}

// env is a service's environment after interpolation ("" for a variable without a value).
func env(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		} else {
			out[k] = ""
		}
	}
	return out
}

func TestComposeStructure(t *testing.T) {
	p := loadCompose(t)
	for _, name := range append([]string{"nats", "clickhouse", "migrate", "vendorsim"}, stages...) {
		svcOf(t, p, name)
	}
	for name, s := range p.Services {
		t.Run(name, func(t *testing.T) {
			for dep, d := range s.DependsOn {
				ds := svcOf(t, p, dep)
				switch d.Condition {
				case types.ServiceConditionStarted:
				case types.ServiceConditionHealthy:
					if ds.HealthCheck == nil || ds.HealthCheck.Disable {
						t.Errorf("depends_on %s: service_healthy, but %s has no healthcheck", dep, dep)
					}
				case types.ServiceConditionCompletedSuccessfully:
					if ds.Restart != "" && ds.Restart != "no" {
						t.Errorf("depends_on %s: service_completed_successfully, but %s restarts (%s)", dep, dep, ds.Restart)
					}
				}
				if len(ds.Profiles) > 0 && len(s.Profiles) == 0 {
					t.Errorf("depends_on %s, which runs only with profile %v", dep, ds.Profiles)
				}
			}
			for _, v := range s.Volumes {
				if v.Type == types.VolumeTypeBind {
					rel, ok := strings.CutPrefix(v.Source, repoRoot(t)+"/")
					if !ok {
						t.Errorf("bind mount of host path %s outside the repository: not portable", v.Source)
					} else if !exists(t, rel) {
						t.Errorf("bind mount %s: no such file in the repository", rel)
					}
				}
			}
			for _, port := range s.Ports {
				if port.Published != "" && port.HostIP != "127.0.0.1" {
					t.Errorf("port %s is published on all interfaces; bind it to 127.0.0.1", port.Published)
				}
			}
		})
	}
	for name, sec := range p.Secrets {
		if rel, ok := strings.CutPrefix(sec.File, repoRoot(t)+"/"); !ok || !exists(t, rel) {
			t.Errorf("secret %s: default file %s is not in the repository", name, sec.File)
		}
	}
	if !strings.Contains(string(readFile(t, composeFile)), "--profile tracing") {
		t.Error("the file's comments do not say how to turn tracing on (--profile tracing)")
	}
}

func TestComposeMarketpipeServices(t *testing.T) {
	p := loadCompose(t)
	img := svcOf(t, p, "loader").Image
	if img == "" {
		t.Fatal("loader has no image name: the stages must share one tagged image")
	}
	programs := map[string]string{"migrate": "marketpipe", "vendorsim": "vendorsim"}
	for _, s := range stages {
		programs[s] = s
	}
	for svc, program := range programs {
		t.Run(svc, func(t *testing.T) {
			s := svcOf(t, p, svc)
			if s.Image != img {
				t.Errorf("image %q; want the shared marketpipe image %q", s.Image, img)
			}
			if s.Build == nil || s.Build.Context != repoRoot(t) {
				t.Errorf("build %+v; want the repository as the context", s.Build)
			} else if s.Build.Dockerfile != "" && !exists(t, s.Build.Dockerfile) {
				t.Errorf("build dockerfile %s does not exist", s.Build.Dockerfile)
			}
			if len(s.Command) == 0 || s.Command[0] != binDir+program {
				t.Fatalf("command %q; want %s%s first", s.Command, binDir, program)
			}
			if _, ok := binaries[program]; !ok {
				t.Errorf("command runs %s, which the Dockerfile does not build", program)
			}
			if s.User == "" || s.User == "root" || strings.HasPrefix(s.User, "0") {
				t.Errorf("user %q; want a numeric non-root user", s.User)
			}
			if !s.ReadOnly {
				t.Error("read_only is not true")
			}
			if !slices.Contains(s.CapDrop, "ALL") {
				t.Error("cap_drop does not include ALL")
			}
			if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Error("security_opt lacks no-new-privileges:true")
			}
			e := env(s)
			for _, k := range requiredEnv(svc) {
				if e[k] == "" {
					t.Errorf("environment %s is missing or empty by default", k)
				}
			}
			for k := range e {
				if !knownVar(program, k) {
					t.Errorf("environment %s is not a variable %s reads", k, program)
				}
			}
		})
	}
}

func TestComposeStages(t *testing.T) {
	p := loadCompose(t)
	for _, name := range stages {
		t.Run(name, func(t *testing.T) {
			s := svcOf(t, p, name)
			if s.Restart != "unless-stopped" {
				t.Errorf("restart %q; want unless-stopped", s.Restart)
			}
			if s.HealthCheck != nil {
				t.Error("stages have no healthcheck (the image has no shell or HTTP client); drop it")
			}
			if d := s.DependsOn["nats"]; d.Condition != types.ServiceConditionHealthy {
				t.Errorf("depends_on nats: %q; want service_healthy", d.Condition)
			}
			if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < 30*time.Second {
				t.Errorf("stop_grace_period %v; want at least 30s to drain (Compose's default is 10s)", s.StopGracePeriod)
			}
			e := env(s)
			if u, err := url.Parse(e["NATS_URL"]); err != nil || p.Services[u.Hostname()].Name == "" {
				t.Errorf("NATS_URL %q does not name a service", e["NATS_URL"])
			}
			if name == "loader" {
				if d := s.DependsOn["migrate"]; d.Condition != types.ServiceConditionCompletedSuccessfully {
					t.Errorf("depends_on migrate: %q; want service_completed_successfully", d.Condition)
				}
				host, _, _ := strings.Cut(e["CLICKHOUSE_ADDR"], ":")
				if _, ok := p.Services[host]; !ok {
					t.Errorf("CLICKHOUSE_ADDR %q does not name a service", e["CLICKHOUSE_ADDR"])
				}
			}
			if vendorStages[name] {
				if e["VENDOR_URL"] != "http://vendorsim:8081/eap" {
					t.Errorf("VENDOR_URL defaults to %q; want http://vendorsim:8081/eap", e["VENDOR_URL"])
				}
				cmd := svcOf(t, p, "vendorsim").Command
				if i := slices.Index(cmd, "-addr"); i < 0 || !strings.HasSuffix(cmd[i+1], ":8081") {
					t.Errorf("vendorsim command %q does not listen on 8081, which VENDOR_URL names", cmd)
				}
				sec, ok := strings.CutPrefix(e["VENDOR_CREDENTIALS"], "/run/secrets/")
				if !ok || !slices.ContainsFunc(s.Secrets, func(r types.ServiceSecretConfig) bool { return r.Source == sec }) {
					t.Errorf("VENDOR_CREDENTIALS %q is not a secret mounted in this service", e["VENDOR_CREDENTIALS"])
				}
			}
			replicas := 1
			if s.Deploy != nil && s.Deploy.Replicas != nil {
				replicas = *s.Deploy.Replicas
			}
			if wideStages[name] && replicas < 2 {
				t.Errorf("deploy.replicas %d; want at least 2", replicas)
			}
			if replicas > 1 && (s.ContainerName != "" || len(s.Ports) > 0) {
				t.Error("container_name or published ports with several replicas would collide")
			}
		})
	}
}

func TestComposeInfrastructure(t *testing.T) {
	p := loadCompose(t)
	t.Run("nats", func(t *testing.T) {
		s := svcOf(t, p, "nats")
		if !strings.HasPrefix(s.Image, "nats:2.11") {
			t.Errorf("image %q; want nats:2.11", s.Image)
		}
		i := slices.Index(s.Command, "--config")
		if i < 0 || i+1 >= len(s.Command) {
			t.Fatalf("command %q does not pass --config", s.Command)
		}
		conf := s.Command[i+1]
		mounted, dataVolume := false, false
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && v.Source == path(t, "deploy/nats/nats.conf") && v.Target == conf {
				mounted = true
			}
			if v.Type == types.VolumeTypeVolume {
				dataVolume = true
				storeDir := natsOptions(t, "deploy/nats/nats.conf", nil).StoreDir
				if !strings.HasPrefix(storeDir, strings.TrimSuffix(v.Target, "/")+"/") {
					t.Errorf("JetStream store_dir %s is not on the volume mounted at %s", storeDir, v.Target)
				}
			}
		}
		if !mounted {
			t.Errorf("deploy/nats/nats.conf is not mounted at %s", conf)
		}
		if !dataVolume {
			t.Error("no named volume for JetStream's file storage")
		}
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), ":8222/healthz") {
			t.Error("the healthcheck does not ask the monitoring port's /healthz")
		}
		if !slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool { return p.Target == 8222 }) {
			t.Error("monitoring port 8222 is not published")
		}
	})
	t.Run("clickhouse", func(t *testing.T) {
		s := svcOf(t, p, "clickhouse")
		if !strings.HasPrefix(s.Image, "clickhouse/clickhouse-server:") {
			t.Errorf("image %q; want clickhouse/clickhouse-server with a tag", s.Image)
		}
		if s.HealthCheck == nil {
			t.Error("no healthcheck")
		}
		if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/var/lib/clickhouse" }) {
			t.Error("no volume on /var/lib/clickhouse")
		}
		// The server's account must be the one the loader and migrate log in with.
		server, client := env(s), env(svcOf(t, p, "loader"))
		for sk, ck := range map[string]string{"CLICKHOUSE_DB": "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER": "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD": "CLICKHOUSE_PASSWORD"} {
			if server[sk] != client[ck] {
				t.Errorf("clickhouse %s=%q but loader %s=%q", sk, server[sk], ck, client[ck])
			}
		}
	})
	t.Run("migrate", func(t *testing.T) {
		s := svcOf(t, p, "migrate")
		if !slices.Equal(s.Command, types.ShellCommand{binDir + "marketpipe", "migrate"}) {
			t.Errorf("command %q; want marketpipe migrate", s.Command)
		}
		if s.Restart != "" && s.Restart != "no" {
			t.Errorf("restart %q: a one-shot must not restart", s.Restart)
		}
		if d := s.DependsOn["clickhouse"]; d.Condition != types.ServiceConditionHealthy {
			t.Errorf("depends_on clickhouse: %q; want service_healthy", d.Condition)
		}
	})
	t.Run("tracing profile", func(t *testing.T) {
		var tracing []string
		for name, s := range p.Services {
			if slices.Contains(s.Profiles, "tracing") {
				tracing = append(tracing, name)
			}
		}
		if len(tracing) == 0 {
			t.Fatal("no service in profile tracing")
		}
		for _, name := range stages {
			e := env(svcOf(t, p, name))
			if e["OTEL_TRACES_EXPORTER"] != "none" {
				t.Errorf("%s: OTEL_TRACES_EXPORTER defaults to %q; want none (tracing is opt-in)", name, e["OTEL_TRACES_EXPORTER"])
			}
			u, err := url.Parse(e["OTEL_EXPORTER_OTLP_ENDPOINT"])
			if err != nil || !slices.Contains(tracing, u.Hostname()) {
				t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q is not a tracing-profile service", name, e["OTEL_EXPORTER_OTLP_ENDPOINT"])
			}
		}
	})
}

// composeVariables are the ${VAR}s of docker-compose.yml, as compose-go's template package
// finds them.
func composeVariables(t *testing.T) map[string]template.Variable {
	t.Helper()
	var dict map[string]any
	if err := yaml.Unmarshal(readFile(t, composeFile), &dict); err != nil {
		t.Fatal(err)
	}
	return template.ExtractVariables(dict, template.DefaultPattern)
}

// TestComposeVariables checks every ${VAR}: it has a default (so `docker compose up` works
// with nothing set), the file's header documents it, and set, it overrides what the file says.
func TestComposeVariables(t *testing.T) {
	vars := composeVariables(t)
	if len(vars) == 0 {
		t.Fatal("no ${VAR} at all: nothing can be overridden")
	}
	var comments strings.Builder
	for _, line := range strings.Split(string(readFile(t, composeFile)), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			comments.WriteString(line + "\n")
		}
	}
	defaults := loadCompose(t)
	var set []string
	for name, v := range vars {
		if !v.Required && v.DefaultValue == "" && !secretName.MatchString(name) {
			// ${X:-} is a default too, but only for what may be empty: secrets.
			t.Errorf("${%s} has no default: write ${%s:-default}", name, name)
		}
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(comments.String()) {
			t.Errorf("${%s} is not documented in the file's comments", name)
		}
		set = append(set, name+"=override-"+strings.ToLower(name))
	}
	// Every value a variable sets must change when it is set, or the header's promise is false.
	ports := map[string]bool{"NATS_PORT": true, "NATS_MONITOR_PORT": true, "CLICKHOUSE_TCP_PORT": true, "CLICKHOUSE_HTTP_PORT": true, "VENDORSIM_PORT": true, "CLICKHOUSE_NOFILE": true}
	for i, kv := range set {
		if name, _, _ := strings.Cut(kv, "="); ports[name] {
			set[i] = name + "=1234" // numbers where the schema wants them
		}
	}
	overridden := loadCompose(t, set...)
	before, _ := defaults.MarshalYAML()
	after, _ := overridden.MarshalYAML()
	for _, kv := range set {
		_, v, _ := strings.Cut(kv, "=")
		if v != "1234" && !bytes.Contains(after, []byte(v)) {
			t.Errorf("%s does not reach the loaded project", kv)
		}
	}
	if bytes.Equal(before, after) {
		t.Error("setting every variable changes nothing")
	}
	if !strings.Contains(string(after), "1234") {
		t.Error("the port variables do not reach the loaded project")
	}
}

// TestComposeNoLiteralSecrets checks that no secret-named variable has a literal value: it is
// empty by default (from the caller's environment), or names a mounted secret file.
func TestComposeNoLiteralSecrets(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		for k, v := range env(s) {
			if (secretName.MatchString(k) || strings.HasSuffix(k, "CREDENTIALS")) && v != "" && !strings.HasPrefix(v, "/run/secrets/") {
				t.Errorf("%s: %s defaults to a literal", name, k)
			}
		}
	}
	for name, v := range composeVariables(t) {
		if secretName.MatchString(name) && v.DefaultValue != "" {
			t.Errorf("${%s} defaults to a literal", name)
		}
	}
}

// TestDevCredentials checks the simulator-only vendor credentials that Compose and the dev
// overlay mount: a credentials file the stages can sign with (client_id, hex client_secret,
// an expiry in the future), and one whose secret says what it is.
func TestDevCredentials(t *testing.T) {
	const file = "deploy/k8s/overlays/dev/vendorsim-credentials.json"
	var creds struct {
		ClientID       string   `json:"client_id"`
		ClientSecret   string   `json:"client_secret"`
		ExpirationDate int64    `json:"expiration_date"`
		Scopes         []string `json:"scopes"`
	}
	dec := json.NewDecoder(bytes.NewReader(readFile(t, file)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&creds); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if creds.ClientID == "" {
		t.Error("client_id is empty")
	}
	secret, err := hex.DecodeString(creds.ClientSecret)
	if err != nil || len(secret) == 0 {
		t.Errorf("client_secret is not a non-empty hex string: %v", err)
	}
	if !strings.Contains(string(secret), "simulator") {
		t.Error("the dev secret does not say it is for the simulator only")
	}
	if exp := time.UnixMilli(creds.ExpirationDate); !exp.After(time.Now().AddDate(10, 0, 0)) {
		t.Errorf("expiration_date %s is too soon for a file kept in the repository", exp)
	}
	p := loadCompose(t)
	if f := p.Secrets["vendor_credentials"].File; f != path(t, file) {
		t.Errorf("Compose's vendor_credentials secret defaults to %s; want ./%s", f, file)
	}
}

const composeAuthFile = "docker-compose.auth.yml"

// loadComposeAuth loads docker-compose.yml with docker-compose.auth.yml over it, as
// `docker compose -f docker-compose.yml -f docker-compose.auth.yml` does.
func loadComposeAuth(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{path(t, composeFile), path(t, composeAuthFile)},
		cli.WithWorkingDirectory(repoRoot(t)), cli.WithName("marketpipe"), cli.WithEnv(env),
		cli.WithDiscardEnvFile, cli.WithProfiles([]string{"*"}))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

// TestComposeAuth checks the least-privilege mode: NATS_CREDS_DIR is required; nats-server runs
// the configuration that includes the directory's nats-auth.conf, mounted next to it; every
// service that connects to NATS gets exactly one NATS secret, its own identity's .creds from
// the directory, with NATS_CREDS naming it; migrate gets the admin's, no one else does; and
// docker-compose.yml alone stays anonymous.
func TestComposeAuth(t *testing.T) {
	if _, err := loadComposeAuth(t); err == nil || !strings.Contains(err.Error(), "NATS_CREDS_DIR") {
		t.Errorf("without NATS_CREDS_DIR: %v; want an error naming it", err)
	}
	const dir = "/creds-dir"
	p, err := loadComposeAuth(t, "NATS_CREDS_DIR="+dir)
	if err != nil {
		t.Fatalf("compose-go: %s with %s: %v", composeFile, composeAuthFile, err)
	}
	nats := svcOf(t, p, "nats")
	conf := ""
	if i := slices.Index(nats.Command, "--config"); i >= 0 && i+1 < len(nats.Command) {
		conf = nats.Command[i+1]
	}
	mounts := map[string]string{}
	for _, v := range nats.Volumes {
		if v.Type == types.VolumeTypeBind {
			mounts[v.Target] = v.Source
		}
	}
	if mounts[conf] != path(t, "deploy/nats/nats-auth-mode.conf") {
		t.Errorf("nats runs --config %q, not deploy/nats/nats-auth-mode.conf", conf)
	}
	if inc := filepath.Join(filepath.Dir(conf), "nats-auth.conf"); mounts[inc] != dir+"/nats-auth.conf" {
		t.Errorf("%s is %q; want $NATS_CREDS_DIR/nats-auth.conf next to the configuration", inc, mounts[inc])
	}
	if inc := filepath.Join(filepath.Dir(conf), "nats.conf"); mounts[inc] != path(t, "deploy/nats/nats.conf") {
		t.Errorf("%s (which nats-auth-mode.conf includes) is %q", inc, mounts[inc])
	}
	natsSecrets := map[string]bool{}
	for name, s := range p.Secrets {
		if id, ok := strings.CutPrefix(name, "nats_"); ok {
			natsSecrets[name] = true
			if s.File != dir+"/"+id+".creds" {
				t.Errorf("secret %s is the file %s; want $NATS_CREDS_DIR/%s.creds", name, s.File, id)
			}
		}
	}
	for name, s := range p.Services {
		if name == "nats" || name == "clickhouse" || name == "jaeger" || name == "vendorsim" {
			for _, sec := range s.Secrets {
				if natsSecrets[sec.Source] {
					t.Errorf("%s gets the NATS secret %s", name, sec.Source)
				}
			}
			continue
		}
		identity := name
		if name == "migrate" {
			identity = "admin"
		}
		var got []string
		for _, sec := range s.Secrets {
			if natsSecrets[sec.Source] {
				got = append(got, sec.Source)
			}
		}
		want := "nats_" + identity
		if !slices.Equal(got, []string{want}) {
			t.Errorf("%s gets the NATS secrets %v; want only its own, %s", name, got, want)
		}
		if creds := env(s)["NATS_CREDS"]; creds != "/run/secrets/"+want {
			t.Errorf("%s: NATS_CREDS %q; want /run/secrets/%s", name, creds, want)
		}
		for _, k := range []string{"NATS_USER", "NATS_PASSWORD"} {
			if _, ok := s.Environment[k]; ok {
				t.Errorf("%s: %s is set beside NATS_CREDS (the services refuse both)", name, k)
			}
		}
		// Mutual TLS: the CA and the services' client certificate, as secrets.
		for k, sec := range map[string]string{"NATS_CA": "tls_ca", "NATS_CERT": "tls_cert", "NATS_KEY": "tls_key"} {
			if v := env(s)[k]; v != "/run/secrets/"+sec {
				t.Errorf("%s: %s %q; want /run/secrets/%s", name, k, v, sec)
			}
			if !slices.ContainsFunc(s.Secrets, func(r types.ServiceSecretConfig) bool { return r.Source == sec }) {
				t.Errorf("%s does not get the secret %s", name, sec)
			}
		}
	}
	for sec, file := range map[string]string{"tls_ca": auth.TLSCA, "tls_cert": auth.TLSClientCert, "tls_key": auth.TLSClientKey} {
		if got := p.Secrets[sec].File; got != dir+"/"+file {
			t.Errorf("secret %s is the file %q; want $NATS_CREDS_DIR/%s", sec, got, file)
		}
	}
	// The server's certificate where nats-auth-mode.conf's tls block names it.
	for _, f := range []string{auth.TLSCA, auth.TLSServerCert, auth.TLSServerKey} {
		if got := mounts["/etc/nats/tls/"+f]; got != dir+"/"+f {
			t.Errorf("nats: /etc/nats/tls/%s is %q; want $NATS_CREDS_DIR/%s", f, got, f)
		}
	}
	for _, name := range append([]string{"migrate"}, stages...) {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	// docker-compose.yml alone: anonymous, as before.
	for name, s := range loadCompose(t).Services {
		if _, ok := s.Environment["NATS_CREDS"]; ok {
			t.Errorf("docker-compose.yml alone gives %s NATS_CREDS", name)
		}
	}
	header := string(readFile(t, composeFile))
	for _, want := range []string{composeAuthFile, "marketpipe auth init", "NATS_CREDS_DIR", "65532"} {
		if !strings.Contains(header, want) {
			t.Errorf("docker-compose.yml's header does not mention %s", want)
		}
	}
}
