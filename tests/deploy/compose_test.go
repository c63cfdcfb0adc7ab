package deploy_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// interpolation is one ${...} or $NAME expression of a Compose file.
type interpolation struct {
	name     string
	op       string // "", ":-", "-", ":?", "?", ":+", "+"
	operand  string
	rawValue string
}

var interpRe = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+])(.*?))?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$`)

// interpolations lists the expressions in s ($$ is an escaped dollar). A lone "$" or an
// unparseable ${...} comes back with an empty name.
func interpolations(s string) []interpolation {
	var out []interpolation
	for _, m := range interpRe.FindAllStringSubmatch(s, -1) {
		switch {
		case m[0] == "$$":
		case m[1] != "":
			op := ""
			if m[2] != "" {
				op = strings.TrimSuffix(m[2], m[3])
			}
			out = append(out, interpolation{name: m[1], op: op, operand: m[3], rawValue: m[0]})
		case m[4] != "":
			out = append(out, interpolation{name: m[4], rawValue: m[0]})
		default:
			out = append(out, interpolation{rawValue: m[0]})
		}
	}
	return out
}

// withDefaults expands s as Compose would with none of its variables set.
func withDefaults(s string) string {
	return interpRe.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpRe.FindStringSubmatch(m)
		if op := strings.TrimSuffix(sub[2], sub[3]); op == ":-" || op == "-" {
			return sub[3]
		}
		return ""
	})
}

func TestInterpolations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ops  []string
	}{
		{"${A:-x}", "x", []string{":-"}},
		{"${A-}", "", []string{"-"}},
		{"$$HOME", "$HOME", nil},
		{"${A}", "", []string{""}},
		{"pre ${A:-http://h:1/p} $B", "pre http://h:1/p ", []string{":-", ""}},
		{"${A:?say it}", "", []string{":?"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := withDefaults(tc.in); got != tc.want {
				t.Errorf("withDefaults = %q; want %q", got, tc.want)
			}
			var ops []string
			for _, in := range interpolations(tc.in) {
				ops = append(ops, in.op)
			}
			if fmt.Sprint(ops) != fmt.Sprint(tc.ops) {
				t.Errorf("ops = %q; want %q", ops, tc.ops)
			}
		})
	}
}

// composeFile is docker-compose.yml decoded with its YAML anchors and merge keys resolved.
type composeFile struct {
	top      map[string]any
	services map[string]map[string]any
	raw      string
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw := string(readFile(t, "docker-compose.yml"))
	docs, err := decodeDocs([]byte(raw))
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yml has %d documents; want 1", len(docs))
	}
	c := composeFile{top: docs[0], services: map[string]map[string]any{}, raw: raw}
	for name, s := range mapAt(c.top, "services") {
		m, ok := s.(map[string]any)
		if !ok {
			t.Fatalf("service %s is not a mapping", name)
		}
		c.services[name] = m
	}
	return c
}

// command returns a service's command as a list of words.
func (c composeFile) command(svc string) []string {
	switch v := c.services[svc]["command"].(type) {
	case string:
		return strings.Fields(v)
	default:
		return stringList(v)
	}
}

// env returns a service's environment (mapping or KEY=VALUE list form), values unexpanded.
func (c composeFile) env(svc string) map[string]string {
	out := map[string]string{}
	switch v := c.services[svc]["environment"].(type) {
	case map[string]any:
		for k := range v {
			out[k] = strAt(v, k)
		}
	case []any:
		for _, kv := range stringList(v) {
			k, val, _ := strings.Cut(kv, "=")
			out[k] = val
		}
	}
	return out
}

// dependsOn returns a service's dependencies and their conditions (short form: service_started).
func (c composeFile) dependsOn(svc string) map[string]string {
	out := map[string]string{}
	switch v := c.services[svc]["depends_on"].(type) {
	case []any:
		for _, d := range stringList(v) {
			out[d] = "service_started"
		}
	case map[string]any:
		for d := range v {
			cond := strAt(v, d, "condition")
			if cond == "" {
				cond = "service_started"
			}
			out[d] = cond
		}
	}
	return out
}

func (c composeFile) volumes(svc string) []string {
	var out []string
	for _, v := range listAt(c.services[svc], "volumes") {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case map[string]any: // long syntax
			out = append(out, strAt(x, "source")+":"+strAt(x, "target"))
		}
	}
	return out
}

// Keys Compose accepts on a service (compose-spec); a misspelt key is otherwise silently ignored.
var composeServiceKeys = map[string]bool{
	"annotations": true, "attach": true, "build": true, "blkio_config": true, "cap_add": true,
	"cap_drop": true, "cgroup": true, "cgroup_parent": true, "command": true, "configs": true,
	"container_name": true, "cpu_count": true, "cpu_percent": true, "cpu_shares": true,
	"cpu_period": true, "cpu_quota": true, "cpu_rt_runtime": true, "cpu_rt_period": true,
	"cpus": true, "cpuset": true, "credential_spec": true, "depends_on": true, "deploy": true,
	"develop": true, "device_cgroup_rules": true, "devices": true, "dns": true, "dns_opt": true,
	"dns_search": true, "domainname": true, "entrypoint": true, "env_file": true,
	"environment": true, "expose": true, "extends": true, "external_links": true,
	"extra_hosts": true, "gpus": true, "group_add": true, "healthcheck": true, "hostname": true,
	"image": true, "init": true, "ipc": true, "isolation": true, "labels": true, "links": true,
	"logging": true, "mac_address": true, "mem_limit": true, "mem_reservation": true,
	"mem_swappiness": true, "memswap_limit": true, "network_mode": true, "networks": true,
	"oom_kill_disable": true, "oom_score_adj": true, "pid": true, "pids_limit": true,
	"platform": true, "ports": true, "post_start": true, "pre_stop": true, "privileged": true,
	"profiles": true, "pull_policy": true, "read_only": true, "restart": true, "runtime": true,
	"scale": true, "secrets": true, "security_opt": true, "shm_size": true, "stdin_open": true,
	"stop_grace_period": true, "stop_signal": true, "storage_opt": true, "sysctls": true,
	"tmpfs": true, "tty": true, "ulimits": true, "user": true, "userns_mode": true,
	"uts": true, "volumes": true, "volumes_from": true, "working_dir": true,
}

func TestComposeStructure(t *testing.T) {
	c := loadCompose(t)
	for k := range c.top {
		switch k {
		case "name", "services", "volumes", "networks", "secrets", "configs", "include":
		default:
			if !strings.HasPrefix(k, "x-") {
				t.Errorf("unknown top-level key %q", k)
			}
		}
	}
	if _, ok := c.top["version"]; ok {
		t.Error("top-level version is obsolete in the Compose specification")
	}
	required := append([]string{"nats", "clickhouse", "migrate", "vendorsim"}, stages...)
	for _, name := range required {
		if _, ok := c.services[name]; !ok {
			t.Errorf("service %s is missing", name)
		}
	}
	names := make([]string, 0, len(c.services))
	for name := range c.services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			s := c.services[name]
			for k := range s {
				if !composeServiceKeys[k] {
					t.Errorf("unknown service key %q", k)
				}
			}
			if strAt(s, "image") == "" && at(s, "build") == nil {
				t.Error("neither image nor build")
			}
			if r := strAt(s, "restart"); r != "" && !contains([]string{"no", "always", "on-failure", "unless-stopped"}, strings.Split(r, ":")[0]) {
				t.Errorf("restart %q is not a Compose restart policy", r)
			}
			for dep, cond := range c.dependsOn(name) {
				d, ok := c.services[dep]
				if !ok {
					t.Errorf("depends_on %s: no such service", dep)
					continue
				}
				switch cond {
				case "service_started":
				case "service_healthy":
					if at(d, "healthcheck") == nil {
						t.Errorf("depends_on %s: service_healthy, but %s has no healthcheck", dep, dep)
					}
				case "service_completed_successfully":
					if r := strAt(d, "restart"); r != "" && r != "no" {
						t.Errorf("depends_on %s: service_completed_successfully, but %s restarts (%s)", dep, dep, r)
					}
				default:
					t.Errorf("depends_on %s: unknown condition %q", dep, cond)
				}
				if len(stringList(at(d, "profiles"))) > 0 && len(stringList(at(s, "profiles"))) == 0 {
					t.Errorf("depends_on %s, which runs only with profile %v", dep, stringList(at(d, "profiles")))
				}
			}
			for _, v := range c.volumes(name) {
				src, _, _ := strings.Cut(v, ":")
				switch {
				case strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../"):
					if !exists(t, src) {
						t.Errorf("bind mount %s: no such file in the repository", src)
					}
				case strings.HasPrefix(src, "/"):
					t.Errorf("bind mount of host path %s: not portable", src)
				default:
					if _, ok := mapAt(c.top, "volumes")[src]; !ok {
						t.Errorf("named volume %s is not declared under top-level volumes", src)
					}
				}
			}
			for _, sec := range listAt(s, "secrets") {
				ref := fmt.Sprint(sec)
				if m, ok := sec.(map[string]any); ok {
					ref = strAt(m, "source")
				}
				if _, ok := mapAt(c.top, "secrets")[ref]; !ok {
					t.Errorf("secret %s is not declared under top-level secrets", ref)
				}
			}
			for _, p := range listAt(s, "ports") {
				ps := withDefaults(fmt.Sprint(p))
				if strings.Count(ps, ":") == 2 && !strings.HasPrefix(ps, "127.0.0.1:") {
					t.Errorf("port %s is published on all interfaces; bind it to 127.0.0.1", ps)
				}
			}
		})
	}
	if cyc := dependencyCycle(c); cyc != "" {
		t.Errorf("depends_on cycle: %s", cyc)
	}
	for name, sec := range mapAt(c.top, "secrets") {
		if f := withDefaults(strAt(sec, "file")); f != "" && !exists(t, f) {
			t.Errorf("secret %s: default file %s does not exist", name, f)
		}
	}
}

func dependencyCycle(c composeFile) string {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var stack []string
	var visit func(string) string
	visit = func(s string) string {
		switch state[s] {
		case visiting:
			return strings.Join(append(stack, s), " -> ")
		case done:
			return ""
		}
		state[s] = visiting
		stack = append(stack, s)
		for d := range c.dependsOn(s) {
			if cyc := visit(d); cyc != "" {
				return cyc
			}
		}
		stack = stack[:len(stack)-1]
		state[s] = done
		return ""
	}
	for s := range c.services {
		if cyc := visit(s); cyc != "" {
			return cyc
		}
	}
	return ""
}

// marketpipeImage is the image every marketpipe container runs, built from ./Dockerfile.
func marketpipeImage(t *testing.T, c composeFile) string {
	t.Helper()
	img := strAt(c.services["loader"], "image")
	if img == "" {
		t.Fatal("loader has no image name: the stages must share one tagged image")
	}
	return img
}

func TestComposeMarketpipeServices(t *testing.T) {
	c := loadCompose(t)
	img := marketpipeImage(t, c)
	programs := map[string]string{"migrate": "marketpipe", "vendorsim": "vendorsim"}
	for _, s := range stages {
		programs[s] = s
	}
	for svc, program := range programs {
		t.Run(svc, func(t *testing.T) {
			s, ok := c.services[svc]
			if !ok {
				t.Fatalf("service %s is missing", svc)
			}
			if got := strAt(s, "image"); got != img {
				t.Errorf("image %q; want the shared marketpipe image %q", got, img)
			}
			if ctx := strAt(s, "build", "context"); ctx != "." {
				t.Errorf("build context %q; want . (the repository)", ctx)
			}
			if df := strAt(s, "build", "dockerfile"); df != "" && !exists(t, df) {
				t.Errorf("build dockerfile %s does not exist", df)
			}
			cmd := c.command(svc)
			if len(cmd) == 0 || cmd[0] != binDir+program {
				t.Fatalf("command %q; want %s%s first", cmd, binDir, program)
			}
			if _, ok := binaries[program]; !ok {
				t.Errorf("command runs %s, which the Dockerfile does not build", program)
			}
			if u := strAt(s, "user"); u != "" && (u == "root" || strings.HasPrefix(u, "0")) {
				t.Errorf("runs as %s", u)
			}
			if v, _ := at(s, "read_only").(bool); !v {
				t.Error("read_only is not true")
			}
			if !contains(stringList(at(s, "cap_drop")), "ALL") {
				t.Error("cap_drop does not include ALL")
			}
			env := c.env(svc)
			for _, k := range requiredEnv(svc) {
				if withDefaults(env[k]) == "" {
					t.Errorf("environment %s is missing or empty by default", k)
				}
			}
			for k := range env {
				if !knownVar(program, k) && !strings.HasPrefix(k, "GO") {
					t.Errorf("environment %s is not a variable %s reads", k, program)
				}
			}
		})
	}
}

func TestComposeStages(t *testing.T) {
	c := loadCompose(t)
	for _, name := range stages {
		t.Run(name, func(t *testing.T) {
			s := c.services[name]
			if s == nil {
				t.Fatal("missing")
			}
			if r := strAt(s, "restart"); r != "unless-stopped" {
				t.Errorf("restart %q; want unless-stopped", r)
			}
			if at(s, "healthcheck") != nil {
				t.Error("stages have no healthcheck (the image has no shell or HTTP client); drop it")
			}
			if cond := c.dependsOn(name)["nats"]; cond != "service_healthy" {
				t.Errorf("depends_on nats: %q; want service_healthy", cond)
			}
			if g := strAt(s, "stop_grace_period"); g == "" {
				t.Error("no stop_grace_period: Compose's 10s default cuts the drain short")
			} else if d, err := time.ParseDuration(g); err != nil || d < 30*time.Second {
				t.Errorf("stop_grace_period %s; want at least 30s to drain", g)
			}
			env := c.env(name)
			if u, err := url.Parse(withDefaults(env["NATS_URL"])); err != nil || c.services[u.Hostname()] == nil {
				t.Errorf("NATS_URL %q does not name a service", env["NATS_URL"])
			}
			if name == "loader" {
				if cond := c.dependsOn(name)["migrate"]; cond != "service_completed_successfully" {
					t.Errorf("depends_on migrate: %q; want service_completed_successfully", cond)
				}
				host, _, _ := strings.Cut(withDefaults(env["CLICKHOUSE_ADDR"]), ":")
				if c.services[host] == nil {
					t.Errorf("CLICKHOUSE_ADDR %q does not name a service", env["CLICKHOUSE_ADDR"])
				}
			}
			if vendorStages[name] {
				v := env["VENDOR_URL"]
				in := interpolations(v)
				if len(in) != 1 || in[0].name != "VENDOR_URL" || in[0].op != ":-" || in[0].rawValue != v {
					t.Errorf("VENDOR_URL %q; want ${VENDOR_URL:-<simulator>} so it can be overridden", v)
				}
				if def := withDefaults(v); def != "http://vendorsim:8081/eap" {
					t.Errorf("VENDOR_URL defaults to %q; want http://vendorsim:8081/eap", def)
				}
				cmd := c.command("vendorsim")
				if i := indexOf(cmd, "-addr"); i >= 0 && i+1 < len(cmd) && !strings.HasSuffix(cmd[i+1], ":8081") {
					t.Errorf("vendorsim listens on %s, VENDOR_URL expects 8081", cmd[i+1])
				}
				cred := env["VENDOR_CREDENTIALS"]
				if sec, ok := strings.CutPrefix(cred, "/run/secrets/"); !ok || !contains(stringList(at(s, "secrets")), sec) {
					t.Errorf("VENDOR_CREDENTIALS %q is not a secret mounted in this service", cred)
				}
			}
			replicas, _ := intAt(s, "deploy", "replicas")
			if wideStages[name] && replicas < 2 {
				t.Errorf("deploy.replicas %d; want at least 2", replicas)
			}
			if replicas > 1 {
				if at(s, "container_name") != nil {
					t.Error("container_name with several replicas")
				}
				if len(listAt(s, "ports")) > 0 {
					t.Error("published ports with several replicas would collide")
				}
			}
		})
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func TestComposeInfrastructure(t *testing.T) {
	c := loadCompose(t)
	t.Run("nats", func(t *testing.T) {
		s := c.services["nats"]
		if img := strAt(s, "image"); !strings.HasPrefix(img, "nats:2.11") {
			t.Errorf("image %q; want nats:2.11", img)
		}
		cmd := c.command("nats")
		i := indexOf(cmd, "--config")
		if i < 0 || i+1 >= len(cmd) {
			t.Fatalf("command %q does not pass --config", cmd)
		}
		conf := cmd[i+1]
		mounted, dataVolume := false, false
		for _, v := range c.volumes("nats") {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[0] == "./deploy/nats/nats.conf" && parts[1] == conf {
				mounted = true
			}
			if len(parts) >= 2 && !strings.HasPrefix(parts[0], ".") {
				dataVolume = true
				storeDir := natsOptions(t, "deploy/nats/nats.conf", nil).StoreDir
				if !strings.HasPrefix(storeDir, strings.TrimSuffix(parts[1], "/")+"/") {
					t.Errorf("JetStream store_dir %s is not on the volume mounted at %s", storeDir, parts[1])
				}
			}
		}
		if !mounted {
			t.Errorf("deploy/nats/nats.conf is not mounted at %s", conf)
		}
		if !dataVolume {
			t.Error("no named volume for JetStream's file storage")
		}
		hc := strings.Join(stringList(at(s, "healthcheck", "test")), " ")
		if !strings.Contains(hc, ":8222/healthz") {
			t.Errorf("healthcheck %q does not ask the monitoring port's /healthz", hc)
		}
		if !publishes(c, "nats", "8222") {
			t.Error("monitoring port 8222 is not published")
		}
	})
	t.Run("clickhouse", func(t *testing.T) {
		s := c.services["clickhouse"]
		if img := strAt(s, "image"); !strings.HasPrefix(img, "clickhouse/clickhouse-server:") {
			t.Errorf("image %q; want clickhouse/clickhouse-server with a tag", img)
		}
		if at(s, "healthcheck") == nil {
			t.Error("no healthcheck")
		}
		found := false
		for _, v := range c.volumes("clickhouse") {
			if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == "/var/lib/clickhouse" {
				found = true
			}
		}
		if !found {
			t.Error("no volume on /var/lib/clickhouse")
		}
		// The server's account must be the one the loader and migrate log in with.
		env, loader := c.env("clickhouse"), c.env("loader")
		for server, client := range map[string]string{"CLICKHOUSE_DB": "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER": "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD": "CLICKHOUSE_PASSWORD"} {
			if withDefaults(env[server]) != withDefaults(loader[client]) {
				t.Errorf("clickhouse %s=%q but loader %s=%q", server, env[server], client, loader[client])
			}
		}
	})
	t.Run("migrate", func(t *testing.T) {
		if cmd := c.command("migrate"); fmt.Sprint(cmd) != fmt.Sprint([]string{binDir + "marketpipe", "migrate"}) {
			t.Errorf("command %q; want marketpipe migrate", cmd)
		}
		if r := strAt(c.services["migrate"], "restart"); r != "" && r != "no" {
			t.Errorf("restart %q: a one-shot must not restart", r)
		}
		if cond := c.dependsOn("migrate")["clickhouse"]; cond != "service_healthy" {
			t.Errorf("depends_on clickhouse: %q; want service_healthy", cond)
		}
	})
	t.Run("tracing profile", func(t *testing.T) {
		var tracing []string
		for name, s := range c.services {
			if contains(stringList(at(s, "profiles")), "tracing") {
				tracing = append(tracing, name)
			}
		}
		if len(tracing) == 0 {
			t.Fatal("no service in profile tracing")
		}
		for _, name := range stages {
			env := c.env(name)
			if def := withDefaults(env["OTEL_TRACES_EXPORTER"]); def != "none" {
				t.Errorf("%s: OTEL_TRACES_EXPORTER defaults to %q; want none (tracing is opt-in)", name, def)
			}
			u, err := url.Parse(withDefaults(env["OTEL_EXPORTER_OTLP_ENDPOINT"]))
			if err != nil || !contains(tracing, u.Hostname()) {
				t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q is not a tracing-profile service", name, env["OTEL_EXPORTER_OTLP_ENDPOINT"])
			}
		}
		if !strings.Contains(c.raw, "--profile tracing") {
			t.Error("the file's comments do not say how to turn tracing on (--profile tracing)")
		}
	})
}

func publishes(c composeFile, svc, port string) bool {
	for _, p := range listAt(c.services[svc], "ports") {
		if strings.HasSuffix(withDefaults(fmt.Sprint(p)), ":"+port) {
			return true
		}
	}
	return false
}

// TestComposeVariables checks every ${VAR}: it has a default (so `docker compose up` works
// with nothing set) and the file's header documents it.
func TestComposeVariables(t *testing.T) {
	c := loadCompose(t)
	var comments, body strings.Builder
	for _, line := range strings.Split(c.raw, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			comments.WriteString(line + "\n")
		} else {
			body.WriteString(line + "\n")
		}
	}
	seen := map[string]bool{}
	for _, in := range interpolations(body.String()) {
		if in.name == "" {
			t.Errorf("%q: a lone $ (write $$ for a literal dollar)", in.rawValue)
			continue
		}
		if seen[in.rawValue] {
			continue
		}
		seen[in.rawValue] = true
		t.Run(in.rawValue, func(t *testing.T) {
			switch in.op {
			case ":-", "-", ":?", "?":
			default:
				t.Errorf("%s has no default: write ${%s:-default}", in.rawValue, in.name)
			}
			if !regexp.MustCompile(`\b` + in.name + `\b`).MatchString(comments.String()) {
				t.Errorf("%s is not documented in the file's comments", in.name)
			}
		})
	}
	if len(seen) == 0 {
		t.Error("no ${VAR} at all: nothing can be overridden")
	}
}

// TestComposeNoLiteralSecrets checks that no secret-named variable has a literal value: it is
// empty, or comes from the caller's environment with an empty default, or names a mounted file.
func TestComposeNoLiteralSecrets(t *testing.T) {
	c := loadCompose(t)
	for name := range c.services {
		for k, v := range c.env(name) {
			if !secretName.MatchString(k) && !strings.HasSuffix(k, "CREDENTIALS") {
				continue
			}
			t.Run(name+"/"+k, func(t *testing.T) {
				if strings.HasPrefix(v, "/run/secrets/") {
					return
				}
				in := interpolations(v)
				if v != "" && (len(in) != 1 || in[0].rawValue != v) {
					t.Fatalf("%s=%q is a literal", k, v)
				}
				if def := withDefaults(v); def != "" {
					t.Errorf("%s defaults to the literal %q", k, def)
				}
			})
		}
	}
	if m := regexp.MustCompile(`(?i)(PASSWORD|SECRET|TOKEN)[A-Z_]*=[^$\s"']+`).FindString(c.raw); m != "" {
		t.Errorf("literal secret assignment in the file: %s", m)
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
	c := loadCompose(t)
	if f := withDefaults(strAt(c.top, "secrets", "vendor_credentials", "file")); f != "./"+file {
		t.Errorf("Compose's vendor_credentials secret defaults to %s; want ./%s", f, file)
	}
}
