// Package deploy_test validates marketpipe's deployment artifacts without running them: the
// Dockerfile, docker-compose.yml, the NATS server configuration and the Kubernetes manifests
// under deploy/k8s. No Docker engine or cluster is needed. The files are read by their own
// tools' code: docker-compose.yml by the Compose specification's loader (compose-go), each
// kustomization built by kustomize's API and every object decoded strictly into the Kubernetes
// API types (k8s.io/api) or KEDA's (unknown fields are errors). The tests then check what the
// pipeline relies on, and coherence between the files (the binaries the Dockerfile builds are
// the ones Compose and Kubernetes run, every referenced object exists). tests/compose runs
// docker-compose.yml for real.
package deploy_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services"
)

// stages are the five pipeline services, in pipeline order.
var stages = func() []string {
	var names []string
	for _, s := range services.All {
		names = append(names, s.Name)
	}
	return names
}()

// binaries maps every program in the image to its main package directory.
var binaries = map[string]string{
	"requester":   "services/requester/cmd/requester",
	"poller":      "services/poller/cmd/poller",
	"collector":   "services/collector/cmd/collector",
	"transformer": "services/transformer/cmd/transformer",
	"loader":      "services/loader/cmd/loader",
	"vendorsim":   "services/vendorsim/cmd/vendorsim",
	"marketpipe":  "cmd/marketpipe",
}

// binDir is where the image installs the binaries; Compose and Kubernetes name them there.
const binDir = "/usr/local/bin/"

// vendorStages talk to the vendor and need VENDOR_URL and VENDOR_CREDENTIALS.
var vendorStages = map[string]bool{"requester": true, "poller": true, "collector": true}

// wideStages run at least two replicas in every deployment (they share files between replicas).
var wideStages = map[string]bool{"transformer": true, "loader": true}

// requiredEnv is what each program needs set, beyond its defaults, to reach its peers.
func requiredEnv(program string) []string {
	var env []string
	if program == "vendorsim" { // the simulator stands alone
		return nil
	}
	if program != "migrate" { // migrate talks to ClickHouse only
		env = append(env, "NATS_URL")
	}
	if vendorStages[program] {
		env = append(env, "VENDOR_URL", "VENDOR_CREDENTIALS")
	}
	if program == "loader" || program == "migrate" {
		env = append(env, "CLICKHOUSE_ADDR", "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER")
	}
	return env
}

// knownVar reports whether program reads the variable name: one of its settings (services.All;
// a program not in it, such as migrate, reads those every process reads), or any OTEL_ one,
// which the OpenTelemetry SDK reads too. An empty program is any pipeline service.
func knownVar(program, name string) bool {
	if strings.HasPrefix(name, "OTEL_") {
		return true
	}
	vars := service.Vars()
	for _, s := range services.All {
		if program == "" || program == s.Name {
			vars = append(vars, s.Vars()...)
		}
	}
	for _, v := range vars {
		if v.Name == name {
			return true
		}
	}
	return false
}

// secretName reports whether an environment variable's name says it holds a secret value.
var secretName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|APIKEY|API_KEY|PRIVATE_KEY)`)

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// repoRoot is the directory holding marketpipe's go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && bytes.Contains(b, []byte("module github.com/marketpipe/marketpipe")) {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = errors.New("no go.mod of github.com/marketpipe/marketpipe above the test directory")
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return rootDir
}

// path returns the absolute path of a repository-relative path.
func path(t testing.TB, rel string) string {
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(path(t, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return b
}

func exists(t testing.TB, rel string) bool {
	_, err := os.Stat(path(t, rel))
	return err == nil
}

// TestBinaryDirectoriesExist checks that every program the image builds and the deployments
// run has a main package in the repository.
func TestBinaryDirectoriesExist(t *testing.T) {
	for name, dir := range binaries {
		t.Run(name, func(t *testing.T) {
			entries, err := os.ReadDir(path(t, dir))
			if err != nil {
				t.Fatalf("%s: main package directory of %s: %v", dir, name, err)
			}
			for _, e := range entries {
				if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
					continue
				}
				b, err := os.ReadFile(filepath.Join(path(t, dir), e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if regexp.MustCompile(`(?m)^package main\b`).Match(b) {
					return
				}
			}
			t.Errorf("%s has no non-test .go file in package main", dir)
		})
	}
}
