// Package tests holds the integration, end-to-end and fault tests: every stage runs as its own
// OS process against a real NATS server and a real ClickHouse server.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
)

// Binaries built once per test run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

var commands = map[string]string{
	"marketpipe":  "./cmd/marketpipe",
	"requester":   "./services/requester/cmd/requester",
	"poller":      "./services/poller/cmd/poller",
	"collector":   "./services/collector/cmd/collector",
	"transformer": "./services/transformer/cmd/transformer",
	"loader":      "./services/loader/cmd/loader",
	"vendorsim":   "./services/vendorsim/cmd/vendorsim",
	// The NATS server as its own process, for restart tests (same module version as the
	// embedded one).
	"nats-server": "github.com/nats-io/nats-server/v2",
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// bin returns the path of a freshly built binary of the repository.
func bin(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "marketpipe-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		for _, pkg := range commands {
			args = append(args, pkg)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// keptLogsEnv names a directory where the processes' logs are kept whole after the tests, one
// folder per test: the 4 KB a failure prints may not reach back to what went wrong.
const keptLogsEnv = "MARKETPIPE_TEST_LOGS"

// logDir is where the test's processes log: a new temporary directory, or the test's folder
// under keptLogsEnv, where a process started again appends to its log.
func logDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv(keptLogsEnv)
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is a service process under test.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	done   chan error
	exited bool // reaped by kill or stop
}

// startProc runs a built binary with env (added to a minimal environment), logging to a file
// that is printed if the test fails. It is stopped with SIGTERM when the test ends.
func startProc(t *testing.T, name, binary string, env map[string]string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir(t), name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if pipelineServices[binary] {
		ensureMigrated(t, env)
	}
	cmd := exec.Command(bin(t, binary), args...)
	cmd.Env = processEnv(env, binary)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("---- log of %s (last 4 KB) ----\n%s", name, tail(data, 4096))
		}
		f.Close()
	})
	return p
}

// kill ends the process at once with SIGKILL, as a crash would, and reaps it.
func (p *proc) kill() {
	if p.exited {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.exited = true
}

// stop sends SIGTERM and waits for a graceful exit (bounded), then kills.
func (p *proc) stop(t *testing.T) {
	if p.exited {
		return
	}
	p.exited = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s exited after SIGTERM with %v (want a clean exit)", p.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM; killing it", p.name)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// pipelineServices are the binaries of the services, each run with its own identity.
var pipelineServices = map[string]bool{"requester": true, "poller": true, "collector": true, "transformer": true, "loader": true}

// credsDirKey, in a test's environment map, names the directory of `marketpipe auth init`'s
// credentials: each process then gets its own identity's NATS_CREDS (processEnv). It is not
// passed to the processes itself.
const credsDirKey = "TEST_NATS_CREDS_DIR"

// processEnv is the environment of a process of identity (a service's binary name, the
// operator's for the CLI, the admin's for migrate) from a test's environment map.
func processEnv(env map[string]string, identity string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		if k != credsDirKey {
			out = append(out, k+"="+v)
		}
	}
	if dir := env[credsDirKey]; dir != "" {
		out = append(out, "NATS_CREDS="+filepath.Join(dir, auth.CredsFile(identity)))
	}
	return out
}

// migrated holds the NATS servers and databases `marketpipe migrate` already set up.
var migrated sync.Map

// ensureMigrated runs `marketpipe migrate` as the admin, once per NATS server and ClickHouse
// database of env (NATS only when env names no ClickHouse): the services and the CLI bind to
// what it declares and never create it themselves.
func ensureMigrated(t *testing.T, env map[string]string) {
	t.Helper()
	if env["NATS_URL"] == "" {
		return
	}
	key := env["NATS_URL"] + "|" + env["CLICKHOUSE_ADDR"] + "|" + env["CLICKHOUSE_DATABASE"]
	if _, done := migrated.Load(key); done {
		return
	}
	args := []string{"migrate"}
	if env["CLICKHOUSE_ADDR"] == "" {
		args = append(args, "--only", "nats")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "marketpipe"), args...)
	cmd.Env = processEnv(env, auth.AdminName)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("marketpipe %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	migrated.Store(key, true)
}

// connectAs connects to env's NATS as identity (with its credentials when env has them, and
// env's TLS files), until the test ends.
func connectAs(t *testing.T, env map[string]string, identity string) jetstream.JetStream {
	t.Helper()
	cfg := config.NATS{URL: env["NATS_URL"], CA: env["NATS_CA"], Cert: env["NATS_CERT"], Key: env["NATS_KEY"]}
	if dir := env[credsDirKey]; dir != "" {
		cfg.Creds = filepath.Join(dir, auth.CredsFile(identity))
	}
	nc, err := natsx.Connect(cfg, "test-"+identity, telemetry.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// runCLI runs the marketpipe CLI to completion and returns its stdout, stderr and exit code.
func runCLI(t *testing.T, ctx context.Context, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	if len(args) > 0 && !map[string]bool{"migrate": true, "dev": true, "parse": true, "auth": true}[args[0]] {
		ensureMigrated(t, env)
	}
	cmd := exec.CommandContext(ctx, bin(t, "marketpipe"), args...)
	cmd.Env = processEnv(env, auth.OperatorName)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("marketpipe %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), code
}

// submittedJob is a job a test submitted through the CLI, with the spec its file asked for.
type submittedJob struct {
	id   string
	spec events.Spec
}

// historyJobs submits gethistory jobs of disjoint securities through the CLI, as the fault and
// cluster tests do: job n is named <name>-<nn> and asks for secs securities <prefix><nn>S<ss>
// US Equity × five fields over 2025.
type historyJobs struct {
	t            *testing.T
	ctx          context.Context
	env          map[string]string
	dir          string
	name, prefix string
	secs         int
	args         []string // more submit arguments
	jobs         []submittedJob
}

var historyFields = []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME"}

// submit submits n more jobs.
func (h *historyJobs) submit(n int) {
	h.t.Helper()
	for range n {
		j := len(h.jobs)
		secs := make([]string, h.secs)
		for s := range secs {
			secs[s] = fmt.Sprintf("%s%02dS%02d US Equity", h.prefix, j, s)
		}
		name := fmt.Sprintf("%s-%02d", h.name, j)
		spec := events.Spec{Name: name, Program: "gethistory", Securities: secs, Fields: historyFields, Start: "2025-01-01", End: "2025-12-31"}
		path := writeJob(h.t, h.dir, name+".yaml", "name: "+name+"\nprogram: gethistory\nsecurities:\n"+yamlList(secs)+
			"fields: ["+strings.Join(historyFields, ", ")+"]\nstart: 2025-01-01\nend: 2025-12-31\ndeadline: 10m\n")
		stdout, stderr, code := runCLI(h.t, h.ctx, h.env, append(append([]string{"submit"}, h.args...), path)...)
		if code != 0 {
			h.t.Fatalf("submit %s: exit %d: %s", name, code, stderr)
		}
		h.jobs = append(h.jobs, submittedJob{id: strings.TrimSpace(stdout), spec: spec})
	}
}

// restartableNATS returns the URL of a nats-server run as its own process with file storage on
// a free port, so that a test can stop and start it again, and the function that starts it
// (and waits until it listens).
func restartableNATS(t *testing.T, ctx context.Context, name string) (string, func() *proc) {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	dir := t.TempDir()
	return "nats://127.0.0.1:" + port, func() *proc {
		p := startProc(t, "nats-server", "nats-server", nil, "-a", "127.0.0.1", "-p", port, "-js", "-sd", dir, "-n", name)
		waitUntil(t, ctx, "nats-server listening", func() bool {
			c, err := net.Dial("tcp", "127.0.0.1:"+port)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return p
	}
}
