// Package deploy_test validates marketpipe's deployment artifacts without running them: the
// Dockerfile, docker-compose.yml, the NATS server configuration and the Kubernetes manifests
// under deploy/k8s. No Docker engine or cluster is needed; every file is parsed and checked for
// the properties the pipeline relies on, and for coherence between the files (the binaries the
// Dockerfile builds are the ones Compose and Kubernetes run, every referenced object exists).
package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

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

// decodeDocs decodes every document of a (multi-document) YAML stream; empty documents are
// skipped. Duplicate keys and syntax errors are errors.
func decodeDocs(b []byte) ([]map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for i := 0; ; i++ {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// at walks m along keys and returns what is there (nil when any step is missing).
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func mapAt(v any, keys ...string) map[string]any {
	m, _ := at(v, keys...).(map[string]any)
	return m
}

func listAt(v any, keys ...string) []any {
	l, _ := at(v, keys...).([]any)
	return l
}

// strAt returns the scalar at keys as a string ("" when missing); numbers and booleans are
// formatted as YAML would write them.
func strAt(v any, keys ...string) string {
	switch x := at(v, keys...).(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// intAt returns the integer at keys, and whether there is one.
func intAt(v any, keys ...string) (int, bool) {
	switch x := at(v, keys...).(type) {
	case int:
		return x, true
	case string:
		n, err := strconv.Atoi(x)
		return n, err == nil
	}
	return 0, false
}

// stringList returns a YAML list of scalars as strings.
func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// quantity parses a Kubernetes or Compose memory quantity (512Mi, 1Gi, 512M, 1000) into bytes.
func quantity(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1000}, {"K", 1000}, {"M", 1000 * 1000}, {"G", 1000 * 1000 * 1000},
		{"m", 0}, // milli: only meaningful for CPU
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("quantity %q: %w", s, err)
			}
			return n * u.mult, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("quantity %q: %w", s, err)
	}
	return n, nil
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

func TestQuantity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"512Mi", 512 << 20}, {"2Gi", 2 << 30}, {"512M", 512e6}, {"1000", 1000}} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := quantity(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("quantity(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
	if _, err := quantity("lots"); err == nil {
		t.Error(`quantity("lots") gave no error`)
	}
}

// TestEveryYAMLParses parses every YAML file this package validates, so a syntax error or a
// duplicate key is reported against its file even where no other test reads it.
func TestEveryYAMLParses(t *testing.T) {
	files := []string{"docker-compose.yml"}
	err := filepath.WalkDir(path(t, "deploy"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			rel, _ := filepath.Rel(repoRoot(t), p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found only %d YAML files (%v): deploy/ is incomplete", len(files), files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			b := readFile(t, f)
			if bytes.Contains(b, []byte("\t")) {
				t.Errorf("%s contains a tab: YAML indentation must be spaces", f)
			}
			docs, err := decodeDocs(b)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(docs) == 0 {
				t.Errorf("%s holds no document", f)
			}
		})
	}
}
