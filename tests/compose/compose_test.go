// Package compose_test runs the repository's docker-compose.yml for real on the local Docker
// engine: it builds the images the file names, starts the stack, submits jobs with the CLI,
// checks the loaded data in ClickHouse through the published port, kills a loader and a
// transformer container in the middle of a job, then runs it again with docker-compose.auth.yml
// (one NATS identity per service and mutual TLS, credentials and certificates from `marketpipe
// auth init`), and removes everything it made.
//
// No image registry is reachable where this runs, so the images are made here with
// `docker import` from what the machine has, under names of this run's own that the compose
// file's image variables (NATS_IMAGE, CLICKHOUSE_IMAGE, MARKETPIPE_IMAGE) point at, so that
// compose never pulls and no image of anyone else's is shadowed or removed:
//
//   - for nats:2.11-alpine: nats-server built from the Go module go.mod requires, busybox for
//     the healthcheck's wget;
//   - for clickhouse/clickhouse-server:25.8: Debian's clickhouse-server (18.16, the version the
//     project supports) with the libraries ldd says it links, busybox, and an entrypoint that
//     creates CLICKHOUSE_USER and CLICKHOUSE_DB as the real image's does;
//   - the marketpipe image (MARKETPIPE_IMAGE): FROM THE BINARIES, not from ./Dockerfile. The
//     Dockerfile needs BuildKit (RUN --mount=type=cache, the # syntax= frontend image) and the
//     golang and distroless base images; this machine's engine has only the classic builder
//     (no buildx plugin) and cannot pull the frontend. So the programs are built on the host
//     with the Dockerfile's flags and laid out as its final stage lays them (tests/deploy
//     checks the Dockerfile itself).
//
// The compose tool is `docker compose` (v2) when the CLI has it, else `docker-compose`.
// With no Docker engine the test is skipped, except under CI=true where it fails.
package compose_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// stack is one running compose project.
type stack struct {
	t       *testing.T
	root    string   // repository root (docker-compose.yml's directory)
	project string   // compose project name, unique to this run
	compose []string // the compose command: docker compose, or docker-compose
	files   []string // the compose files, docker-compose.yml first
	env     []string // the compose variables of this run
	cliEnv  []string // what the marketpipe CLI on the host needs to reach the stack
	bin     string   // host binaries
	store   *chstore.Store
}

func TestComposeStack(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the compose stack takes minutes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute+30*time.Second)
	defer cancel()
	start := time.Now()
	composeCmd := requireDocker(t, ctx)
	root := repoRoot(t)

	id := make([]byte, 4)
	_, _ = rand.Read(id)
	s := &stack{t: t, root: root, project: "mpcomposetest" + hex.EncodeToString(id), compose: composeCmd, bin: t.TempDir(),
		files: []string{"docker-compose.yml"}}

	// Images, removed at the end whatever happens (registered before they exist).
	natsRef := "marketpipe-compose-test/nats:" + s.project
	clickhouseRef := "marketpipe-compose-test/clickhouse:" + s.project
	mpRef := "marketpipe-compose-test/marketpipe:" + s.project
	for _, ref := range []string{natsRef, clickhouseRef, mpRef} {
		t.Cleanup(func() { removeImage(t, ref) })
	}
	buildBinaries(t, ctx, root, s.bin)
	server, err := chserver.Find()
	if err != nil {
		t.Fatalf("clickhouse-server for the stand-in image: %v (make deps installs it)", err)
	}
	if _, err := os.Stat(busyboxPath); err != nil {
		t.Fatalf("static busybox for the stand-in images' healthchecks: %v (apt-get install busybox-static; make compose-test does)", err)
	}
	natsImage(t, ctx, natsRef, filepath.Join(s.bin, "nats-server"))
	clickhouseImage(t, ctx, clickhouseRef, server)
	marketpipeImage(t, ctx, mpRef, s.bin)
	t.Logf("images ready after %s", time.Since(start).Round(time.Second))

	s.env = append(s.env, "MARKETPIPE_IMAGE="+mpRef, "NATS_IMAGE="+natsRef, "CLICKHOUSE_IMAGE="+clickhouseRef,
		"LOG_LEVEL=info", "CLICKHOUSE_NOFILE="+nofileLimit(t), "VENDOR_CREDENTIALS_FILE="+containerCredentials(t, root))
	s.pickPorts()
	s.checkImageNames(ctx, natsRef, clickhouseRef, mpRef)

	t.Cleanup(s.down)
	s.up(ctx)
	t.Logf("stack up after %s", time.Since(start).Round(time.Second))
	chAddr := chAddrOf(s.cliEnv)
	for svc, want := range map[string]int{"transformer": 2, "loader": 2, "requester": 1, "poller": 1, "collector": 1} {
		if got := len(s.containers(ctx, svc)); got != want {
			t.Errorf("%s: %d containers running, the file asks for %d", svc, got, want)
		}
	}

	s.store, err = chstore.Open(ctx, chstore.Config{Addr: chAddr, Database: "marketpipe", User: "marketpipe", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("ClickHouse through the published port %s: %v", chAddr, err)
	}
	defer s.store.Close()

	// First job: submitted with the CLI, which waits until it is loaded.
	dir := t.TempDir()
	small := writeJob(t, dir, "small.yaml", "compose-small", 20, "2026-01-02", "2026-03-31")
	t0 := time.Now()
	out := s.cli(ctx, "submit", small, "--wait", "--timeout", "3m")
	jobID := lastLine(out)
	s.waitState(ctx, jobID, events.Loaded) // the jobs table follows the job's events
	s.checkLoaded(ctx, jobID)
	t.Logf("job %s (20 securities x 3 fields x 1 quarter) loaded %s after submit", jobID, time.Since(t0).Round(time.Millisecond))

	// Second job, larger: one transformer and one loader container are killed while it runs.
	big := writeJob(t, dir, "big.yaml", "compose-big", 300, "2025-01-02", "2026-06-30")
	t0 = time.Now()
	jobID = lastLine(s.cli(ctx, "submit", big))
	transformer, loader := s.containers(ctx, "transformer")[0], s.containers(ctx, "loader")[0]
	st := s.waitState(ctx, jobID, events.Collected)
	if st == events.Loaded {
		t.Fatalf("job %s was loaded before the transformer could be killed: make it larger", jobID)
	}
	crashed := s.kill(ctx, transformer)
	s.waitRowsStored(ctx, jobID)
	crashed = s.kill(ctx, loader) && crashed
	s.waitState(ctx, jobID, events.Loaded)
	s.checkLoaded(ctx, jobID)
	if crashed { // restart: unless-stopped brings crashed containers back
		for _, svc := range []string{"transformer", "loader"} {
			s.waitRunning(ctx, svc, 2)
		}
	}
	t.Logf("job %s (300 securities x 3 fields x 18 months) loaded exactly %s after submit, with a transformer and a loader killed mid-job",
		jobID, time.Since(t0).Round(time.Millisecond))
	s.down() // before the second stack, to leave it the machine

	// The same stack with one NATS identity per service: docker-compose.auth.yml over it.
	s.leastPrivilege(ctx, dir)
	t.Logf("compose test body took %s", time.Since(start).Round(time.Second))
}

// leastPrivilege runs the stack again, as docker-compose.yml's header says, with
// docker-compose.auth.yml and credentials from the image's `marketpipe auth init`: the
// services' .creds given to the containers' uid, the CLI as the operator. A job must load
// exactly, and the server must refuse an anonymous client.
func (s *stack) leastPrivilege(ctx context.Context, jobs string) {
	t := s.t
	start := time.Now()
	creds := filepath.Join(t.TempDir(), "nats-creds")
	if out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "marketpipe"), "auth", "init", "--dir", creds).CombinedOutput(); err != nil {
		t.Fatalf("marketpipe auth init: %v\n%s", err, out)
	}
	for _, f := range []string{"requester.creds", "poller.creds", "collector.creds", "transformer.creds", "loader.creds", "admin.creds", auth.TLSClientKey} {
		if err := os.Chown(filepath.Join(creds, f), 65532, 65532); err != nil {
			t.Fatalf("give %s to the containers' user (uid 65532): %v (the compose test runs as root)", f, err)
		}
	}
	a := *s
	a.project = s.project + "auth"
	a.files = []string{"docker-compose.yml", "docker-compose.auth.yml"}
	a.env = append(slices.Clone(s.env), "NATS_CREDS_DIR="+creds)
	a.pickPorts() // the first stack's may have been taken since it went down
	t.Cleanup(a.down)
	a.up(ctx)
	t.Logf("least-privilege stack up after %s", time.Since(start).Round(time.Second))
	// The CLI on the host: the operator's certificate, through the published port (127.0.0.1
	// is among the server certificate's names).
	tls := []string{"NATS_CA=" + filepath.Join(creds, auth.TLSCA), "NATS_CERT=" + filepath.Join(creds, auth.TLSCLICert),
		"NATS_KEY=" + filepath.Join(creds, auth.TLSCLIKey)}
	anonymous := append(slices.Clone(a.cliEnv), tls...)
	plain := append(slices.Clone(a.cliEnv), "NATS_CREDS="+filepath.Join(creds, "operator.creds"), "NATS_CA="+filepath.Join(creds, auth.TLSCA))
	chAddr := chAddrOf(a.cliEnv)
	a.cliEnv = append(slices.Clone(anonymous), "NATS_CREDS="+filepath.Join(creds, "operator.creds"))

	var err error
	a.store, err = chstore.Open(ctx, chstore.Config{Addr: chAddr, Database: "marketpipe", User: "marketpipe", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.store.Close()
	t0 := time.Now()
	jobID := lastLine(a.cli(ctx, "submit", filepath.Join(jobs, "small.yaml"), "--wait", "--timeout", "3m"))
	a.waitState(ctx, jobID, events.Loaded)
	a.checkLoaded(ctx, jobID)
	t.Logf("least privilege: job %s loaded %s after submit, every service on its own NATS identity over mutual TLS", jobID, time.Since(t0).Round(time.Millisecond))

	// The server refuses, and says so in its log, a client without credentials (with the
	// certificate), and one with the operator's credentials but no client certificate.
	for _, c := range []struct {
		who, log string
		env      []string
	}{{"an anonymous client", "authentication error", anonymous}, {"a client without a certificate", "TLS handshake error", plain}} {
		before := strings.Count(a.output(ctx, "logs", "--no-color", "nats"), c.log)
		// A refused CLI may keep retrying its connection: the server has logged why by then.
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		cmd := exec.CommandContext(cctx, filepath.Join(s.bin, "marketpipe"), "submit", filepath.Join(jobs, "small.yaml"))
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			t.Errorf("%s submitted a job to the least-privilege stack:\n%s", c.who, out)
		}
		if after := strings.Count(a.output(ctx, "logs", "--no-color", "nats"), c.log); after <= before {
			t.Errorf("%s: submit failed (%v: %s), but nats-server logged no %q", c.who, err, strings.TrimSpace(string(out)), c.log)
		} else {
			t.Logf("%s is refused: nats-server logged %d× %q", c.who, after-before, c.log)
		}
	}
}

// chAddrOf is the CLI's CLICKHOUSE_ADDR.
func chAddrOf(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "CLICKHOUSE_ADDR="); ok {
			return v
		}
	}
	return ""
}

// requireDocker returns the compose command, or skips (fails under CI) without an engine.
func requireDocker(t *testing.T, ctx context.Context) []string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: CI must have a Docker engine with Compose for the compose test", msg)
		}
		t.Skipf("%s: the compose test needs a Docker engine with Compose", msg)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		missing("no Docker engine answers (docker version: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	if exec.CommandContext(cctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.CommandContext(cctx, "docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	missing("neither `docker compose` nor `docker-compose` runs")
	return nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// buildBinaries builds every program of the image, and nats-server, static, into dir.
func buildBinaries(t *testing.T, ctx context.Context, root, dir string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", dir+"/",
		"./services/requester/cmd/requester", "./services/poller/cmd/poller", "./services/collector/cmd/collector",
		"./services/transformer/cmd/transformer", "./services/loader/cmd/loader",
		"./services/vendorsim/cmd/vendorsim", "./cmd/marketpipe")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd = exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
}

// checkImageNames fails if the compose file, with this run's variables, names an image other
// than this test's (one it would pull) for a service that runs without a profile.
func (s *stack) checkImageNames(ctx context.Context, refs ...string) {
	var cfg struct {
		Services map[string]struct {
			Image    string   `yaml:"image"`
			Profiles []string `yaml:"profiles"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(s.output(ctx, "config")), &cfg); err != nil {
		s.t.Fatalf("compose config: %v", err)
	}
	for name, svc := range cfg.Services {
		if len(svc.Profiles) == 0 && !slices.Contains(refs, svc.Image) {
			s.t.Fatalf("service %s runs image %s, which this test does not make: make a stand-in for it", name, svc.Image)
		}
	}
}

func (s *stack) command(ctx context.Context, args ...string) *exec.Cmd {
	all := append(slices.Clone(s.compose[1:]), "--project-name", s.project)
	for _, f := range s.files {
		all = append(all, "--file", filepath.Join(s.root, f))
	}
	cmd := exec.CommandContext(ctx, s.compose[0], append(all, args...)...)
	cmd.Dir = s.root
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "COMPOSE_") || strings.HasPrefix(kv, "DOCKER_DEFAULT_PLATFORM=")
	})
	cmd.Env = append(env, s.env...)
	return cmd
}

// publishedPorts are the compose variables of the ports the file publishes on the host.
var publishedPorts = []string{"NATS_PORT", "NATS_MONITOR_PORT", "CLICKHOUSE_TCP_PORT", "CLICKHOUSE_HTTP_PORT", "VENDORSIM_PORT"}

// pickPorts gives every port the file publishes a port free here, so that the test runs beside
// anything, and points the CLI's environment at them.
func (s *stack) pickPorts() {
	s.env = slices.DeleteFunc(s.env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(publishedPorts, name)
	})
	ports := map[string]int{}
	for _, v := range publishedPorts {
		ports[v] = freePort(s.t)
		s.env = append(s.env, fmt.Sprintf("%s=%d", v, ports[v]))
	}
	s.cliEnv = []string{
		fmt.Sprintf("NATS_URL=nats://127.0.0.1:%d", ports["NATS_PORT"]),
		"CLICKHOUSE_ADDR=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports["CLICKHOUSE_TCP_PORT"])),
		"CLICKHOUSE_DATABASE=marketpipe", "CLICKHOUSE_USER=marketpipe",
	}
}

// up starts the stack; when a port picked free was taken before docker bound it (the
// end-to-end tests of tests/ pick theirs at the same time), it starts it again on others.
func (s *stack) up(ctx context.Context) {
	s.t.Helper()
	for attempt := 1; ; attempt++ {
		out, err := s.command(ctx, "up", "-d", "--no-build").CombinedOutput()
		if err == nil {
			return
		}
		if attempt < 3 && strings.Contains(string(out), "address already in use") {
			s.t.Logf("compose up: a published port was taken meanwhile (%v); again on other ports", err)
			if out, err := s.command(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "10").CombinedOutput(); err != nil {
				s.t.Fatalf("compose down: %v\n%s", err, out)
			}
			s.pickPorts()
			continue
		}
		s.t.Fatalf("compose up -d: %v\n%s\n%s", err, out, s.logs())
	}
}

func (s *stack) run(ctx context.Context, args ...string) {
	s.t.Helper()
	if out, err := s.command(ctx, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("compose %s: %v\n%s\n%s", strings.Join(args, " "), err, out, s.logs())
	}
}

func (s *stack) output(ctx context.Context, args ...string) string {
	s.t.Helper()
	var stderr bytes.Buffer
	cmd := s.command(ctx, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// containers are the ids of svc's running containers.
func (s *stack) containers(ctx context.Context, svc string) []string {
	s.t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-q", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.service="+svc).Output()
	if err != nil {
		s.t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// waitRunning waits until svc has n running containers.
func (s *stack) waitRunning(ctx context.Context, svc string, n int) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(s.containers(ctx, svc)) != n {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: %d containers running a minute after the kill; want %d (restart: unless-stopped)", svc, len(s.containers(ctx, svc)), n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// kill crashes a container: SIGKILL to its main process from the host, which Docker sees as a
// crash and restarts (restart: unless-stopped), as it would an OOM kill. Where this process may
// not signal the container's (not root), `docker kill` instead, which Docker does not restart;
// kill reports which it did.
func (s *stack) kill(ctx context.Context, id string) (crashed bool) {
	s.t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "inspect", "--format", "{{.Name}} {{.State.Pid}}", id).Output()
	if err != nil {
		s.t.Fatalf("docker inspect %s: %v", id, err)
	}
	name, pidText, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	pid, err := strconv.Atoi(pidText)
	if err == nil && pid > 0 {
		if err = syscall.Kill(pid, syscall.SIGKILL); err == nil {
			s.t.Logf("killed %s (SIGKILL to its process %d)", name, pid)
			return true
		}
	}
	if out, err := exec.CommandContext(ctx, "docker", "kill", id).CombinedOutput(); err != nil {
		s.t.Fatalf("docker kill %s: %v\n%s", id, err, out)
	}
	s.t.Logf("killed %s (docker kill: this process may not signal it)", name)
	return false
}

// logs is the stack's recent log lines, for a failure's message.
func (s *stack) logs() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := s.command(ctx, "logs", "--no-color", "--tail", "30").CombinedOutput()
	return string(out)
}

// down removes the project's containers, networks and volumes, then checks that none is left.
func (s *stack) down() {
	t := s.t
	if t.Failed() {
		t.Logf("stack logs:\n%s", s.logs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := s.command(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "10").CombinedOutput(); err != nil {
		t.Errorf("compose down: %v\n%s", err, out)
	}
	label := "label=com.docker.compose.project=" + s.project
	for _, what := range [][]string{
		{"ps", "-aq", "--filter", label},
		{"network", "ls", "-q", "--filter", label},
		{"volume", "ls", "-q", "--filter", label},
	} {
		out, err := exec.CommandContext(ctx, "docker", what...).Output()
		if err != nil {
			t.Errorf("docker %s: %v", strings.Join(what, " "), err)
		} else if left := strings.Fields(string(out)); len(left) > 0 {
			t.Errorf("compose down left %d of docker %s %s: %v", len(left), what[0], what[1], left)
		}
	}
}

// cli runs the host's marketpipe CLI (the binary the image holds) against the stack.
func (s *stack) cli(ctx context.Context, args ...string) string {
	s.t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "marketpipe"), args...)
	cmd.Env = append(os.Environ(), s.cliEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("marketpipe %s: %v\n%s\n%s\n%s", strings.Join(args, " "), err, out, stderr.String(), s.logs())
	}
	return string(out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// stateOrder ranks a job's states, so waiting for one is satisfied by any later one.
var stateOrder = map[string]int{
	events.Submitted: 1, events.Requested: 2, events.Ready: 3, events.Collected: 4,
	events.Transformed: 5, events.Loaded: 6, events.Failed: 7,
}

// waitState waits until the job is in state want or later, and returns its state.
func (s *stack) waitState(ctx context.Context, id, want string) string {
	s.t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		j, ok, err := s.store.Job(ctx, id)
		if err == nil && ok {
			if j.State == events.Failed {
				s.t.Fatalf("job %s failed: %s", id, j.Error)
			}
			if stateOrder[j.State] >= stateOrder[want] {
				return j.State
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("job %s not %s after 4 minutes (state %q, err %v)\n%s", id, want, j.State, err, s.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRowsStored waits until the loaders have stored some of the job's rows, and fails if the
// job was loaded by then (the loader would not be killed mid-job).
func (s *stack) waitRowsStored(ctx context.Context, id string) {
	s.t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		j, ok, err := s.store.Job(ctx, id)
		if err == nil && ok {
			if j.State == events.Loaded {
				s.t.Fatalf("job %s was loaded before a loader could be killed mid-job: make it larger", id)
			}
			stats, err := s.store.FieldSummary(ctx, id, j.Version)
			if err == nil && len(stats) > 0 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("no row of job %s stored after 4 minutes\n%s", id, s.logs())
}

// checkLoaded compares, row for row, what readers see of the job with what the simulator
// generated for it (seed 0, the compose file's simulator; run date the day it was requested).
func (s *stack) checkLoaded(ctx context.Context, id string) {
	t := s.t
	t.Helper()
	j, ok, err := s.store.Job(ctx, id)
	if err != nil || !ok {
		t.Fatalf("job %s: ok=%v err=%v", id, ok, err)
	}
	if j.State != events.Loaded {
		t.Fatalf("job %s is %s, not loaded: %s", id, j.State, j.Error)
	}
	var want []obs.Observation
	if err := simdata.Observations(j.Spec, obs.DateOf(j.RequestedAt), 0, func(o *obs.Observation) error {
		want = append(want, *o)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var got []obs.Observation
	var top uint64
	err = s.store.Query(ctx, chstore.Filter{}, func(r *chstore.Row) error {
		if r.JobID != id || r.Version < top {
			return nil
		}
		if r.Version > top {
			top, got = r.Version, nil
		}
		got = append(got, r.Observation)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, cmpKey)
	slices.SortFunc(want, cmpKey)
	if len(got) != len(want) {
		t.Errorf("job %s: loaded %d observations, the simulator generated %d", id, len(got), len(want))
	}
	diffs := 0
	for i := range min(len(got), len(want)) {
		if !got[i].Equal(&want[i]) {
			if diffs < 5 {
				t.Errorf("job %s row %d: loaded %+v, generated %+v", id, i, got[i], want[i])
			}
			diffs++
		}
	}
	if diffs > 0 || len(got) != len(want) {
		t.Fatalf("job %s: %d rows differ", id, diffs)
	}
	if j.RowsLoaded != int64(len(want)) {
		t.Errorf("job %s: jobs table says %d rows loaded, %d are there", id, j.RowsLoaded, len(want))
	}
	t.Logf("job %s: %d observations in ClickHouse, row for row the simulator's", id, len(want))
}

func cmpKey(a, b obs.Observation) int {
	if c := strings.Compare(a.Security, b.Security); c != 0 {
		return c
	}
	if c := strings.Compare(a.Field, b.Field); c != 0 {
		return c
	}
	return int(a.Date - b.Date)
}

func writeJob(t *testing.T, dir, file, name string, n int, start, end string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nprogram: gethistory\nfields: [PX_LAST, PX_VOLUME, PX_OPEN]\nstart: %s\nend: %s\nsecurities:\n", name, start, end)
	for i := range n {
		fmt.Fprintf(&b, "  - CMP%03d US Equity\n", i)
	}
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// nofileLimit is the open-file limit the ClickHouse container may have: the file's 262144
// unless this process's hard limit (the engine's, on a machine like CI's) is lower, in which
// case the container would not start.
func nofileLimit(t *testing.T) string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(min(lim.Max, 262144), 10)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// containerCredentials is the simulator's credentials file as the file's header says to give
// one to the containers: a copy owned by their user (uid 65532) that no one else may read,
// since the stages and the simulator refuse a file others may read.
func containerCredentials(t *testing.T, root string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy/k8s/overlays/dev/vendorsim-credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vendor-credentials.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65532, 65532); err != nil {
		t.Fatalf("give the credentials to the containers' user (uid 65532): %v (the compose test runs as root)", err)
	}
	return path
}
