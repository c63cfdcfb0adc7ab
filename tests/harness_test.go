// Package tests holds the integration, end-to-end and fault tests: every stage runs as its own
// OS process against a real NATS server and a real ClickHouse server.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
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
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin(t, binary), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
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

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// runCLI runs the marketpipe CLI to completion and returns its stdout, stderr and exit code.
func runCLI(t *testing.T, ctx context.Context, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin(t, "marketpipe"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
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
