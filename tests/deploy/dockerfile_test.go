package deploy_test

import (
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	line int    // 1-based line where it starts
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// stage is one FROM ... section.
type stage struct {
	name  string // AS name, or its index
	image string // with ARGs declared before the first FROM expanded
	ins   []instruction
}

// parseDockerfile splits a Dockerfile into stages. Comments and parser directives are dropped;
// a line ending in a backslash continues on the next.
func parseDockerfile(t *testing.T, src string) (globalArgs map[string]string, stages []stage) {
	t.Helper()
	var ins []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		ins = append(ins, instruction{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() != 0 {
		t.Fatalf("Dockerfile ends inside a continued instruction (line %d)", start)
	}
	globalArgs = map[string]string{}
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			var image, name string
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					name = f[i+1]
					i++
				default:
					image = f[i]
				}
			}
			for k, v := range globalArgs {
				image = strings.ReplaceAll(image, "${"+k+"}", v)
				image = strings.ReplaceAll(image, "$"+k, v)
			}
			if name == "" {
				name = strings.Repeat("#", len(stages)) // an index no AS name can equal
			}
			stages = append(stages, stage{name: name, image: image})
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			globalArgs[k] = v
		case len(stages) == 0:
			t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			s := &stages[len(stages)-1]
			s.ins = append(s.ins, in)
		}
	}
	return globalArgs, stages
}

func TestDockerfile(t *testing.T) {
	_, st := parseDockerfile(t, string(readFile(t, "Dockerfile")))
	if len(st) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); want a multi-stage build (builder + runtime)", len(st))
	}
	build, final := st[0], st[len(st)-1]

	// The go build command of the builder stage, and the ENV it runs under.
	var goBuild string
	env := map[string]string{}
	for _, in := range build.ins {
		switch in.cmd {
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		case "RUN":
			if strings.Contains(in.args, "go build") {
				if goBuild != "" {
					t.Errorf("line %d: a second go build; build every binary in one command so the cache is shared", in.line)
				}
				goBuild = in.args
			}
		}
	}

	t.Run("builder", func(t *testing.T) {
		if !regexp.MustCompile(`^golang:1\.26([.-]|$)`).MatchString(build.image) {
			t.Errorf("builder image %q; want golang:1.26", build.image)
		}
		if goBuild == "" {
			t.Fatal("no RUN ... go build in the builder stage")
		}
		if env["CGO_ENABLED"] != "0" && !strings.Contains(goBuild, "CGO_ENABLED=0") {
			t.Error("CGO_ENABLED=0 is not set: the binaries must be static for the distroless image")
		}
		if !strings.Contains(goBuild, "-trimpath") {
			t.Error("go build without -trimpath")
		}
		for _, target := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
			if !strings.Contains(goBuild, "--mount=type=cache,target="+target) {
				t.Errorf("go build has no cache mount for %s", target)
			}
		}
		if !regexp.MustCompile(`-o\s+/out/(\s|$)`).MatchString(goBuild) {
			t.Error("go build does not write into /out/")
		}
	})

	t.Run("builds every binary", func(t *testing.T) {
		built := map[string]bool{}
		for _, f := range strings.Fields(goBuild) {
			if strings.HasPrefix(f, "./") {
				built[filepath.ToSlash(filepath.Clean(f))] = true
			}
		}
		var names []string
		for name := range binaries {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if !built[binaries[name]] {
				t.Errorf("%s (./%s) is not built", name, binaries[name])
			}
			delete(built, binaries[name])
		}
		for pkg := range built {
			t.Errorf("go build names ./%s, which is not one of the expected binaries", pkg)
		}
	})

	t.Run("runtime", func(t *testing.T) {
		if !strings.HasPrefix(final.image, "gcr.io/distroless/static-debian12") &&
			!strings.HasPrefix(final.image, "debian:bookworm-slim") {
			t.Errorf("runtime image %q; want gcr.io/distroless/static-debian12 or debian:bookworm-slim", final.image)
		}
		user := ""
		copied := false
		for _, in := range final.ins {
			switch in.cmd {
			case "USER":
				user = in.args
			case "COPY":
				if strings.Contains(in.args, "--from="+build.name) &&
					regexp.MustCompile(`\s/out/?\s+`+regexp.QuoteMeta(binDir)+`$`).MatchString(in.args) {
					copied = true
				}
			case "RUN":
				t.Errorf("line %d: RUN in the runtime stage (distroless has no shell)", in.line)
			}
		}
		if !copied {
			t.Errorf("runtime stage does not COPY --from=%s /out/ %s", build.name, binDir)
		}
		uid, _, _ := strings.Cut(user, ":")
		switch {
		case user == "" && strings.HasSuffix(final.image, ":nonroot"):
		case user == "":
			t.Error("runtime stage sets no USER: the container would run as root")
		case uid == "root" || uid == "0":
			t.Errorf("runtime stage runs as %q", user)
		case !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid):
			t.Errorf("USER %q is not numeric: Kubernetes cannot verify runAsNonRoot for a name", user)
		}
	})

	t.Run("no secrets baked in", func(t *testing.T) {
		for _, s := range st {
			for _, in := range s.ins {
				switch in.cmd {
				case "ENV", "ARG":
					for _, kv := range strings.Fields(in.args) {
						k, _, _ := strings.Cut(kv, "=")
						if secretName.MatchString(k) || strings.Contains(strings.ToUpper(k), "CREDENTIAL") {
							t.Errorf("line %d: %s %s puts a secret into the image", in.line, in.cmd, k)
						}
					}
				case "COPY", "ADD":
					if regexp.MustCompile(`(?i)(\.pem|\.key|credentials[^ ]*\.json|\.env)\b`).MatchString(in.args) {
						t.Errorf("line %d: %s copies a secret-looking file: %s", in.line, in.cmd, in.args)
					}
				}
			}
		}
	})
}

// dockerignored reports whether rel (slash-separated, relative to the context) is excluded by
// the .dockerignore patterns, following Docker's rules for the forms the file uses: a pattern
// matches the path or any of its parent directories, "**/" matches any number of directories,
// and "!" re-includes.
func dockerignored(patterns []string, rel string) bool {
	excluded := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		if matchIgnore(p, rel) {
			excluded = !neg
		}
	}
	return excluded
}

func matchIgnore(pattern, rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ { // the path itself or a parent directory
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			for j := 0; j < i; j++ {
				if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"go.mod", false},
		{"go.sum", false},
		{"pkg/obs/obs.go", false},
		{"services/loader/cmd/loader/main.go", false},
		{"cmd/marketpipe/main.go", false},
		{".git/HEAD", true},
		{".state/nats/jetstream", true},
		{"pkg/obs/obs_test.go", true},
		{"deploy/k8s/overlays/dev/vendorsim-credentials.json", true},
		{".env", true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := dockerignored(patterns, tc.path); got != tc.want {
				t.Errorf("excluded(%s) = %v; want %v", tc.path, got, tc.want)
			}
		})
	}
}
