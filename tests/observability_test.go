package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// obsStages are the five services, each its own process with its own span file and /metrics.
var obsStages = []string{"requester", "poller", "collector", "transformer", "loader"}

// TestObservability runs one job through the five stages as separate processes, each exporting
// its spans to its own file, and checks that the job is one trace with the right parent links,
// that every process's /metrics counts the job's figures, and that every log line about the
// job carries its trace.
func TestObservability(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	runDate := obs.MakeDate(2026, 11, 20)
	vendorCalls := &obsStatusCounter{counts: map[int]int{}}
	sim := httptest.NewServer(vendorCalls.wrap(vendorsim.NewServer(vendorsim.Options{
		Account: vendorsim.DefaultAccount, ReadyAfter: 700 * time.Millisecond, Seed: simSeed, RunDate: runDate.Time(),
	})))
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		"VENDOR_URL": sim.URL + "/eap", "POLL_INTERVAL": "200ms", "LOG_LEVEL": "debug",
		"OTEL_TRACES_EXPORTER": "console",
	}
	procs := map[string]*proc{}
	addrs := map[string]string{}
	for _, name := range obsStages {
		penv := map[string]string{"HTTP_ADDR": obsFreeAddr(t), "MARKETPIPE_TRACE_FILE": filepath.Join(dir, name+".spans")}
		for k, v := range env {
			penv[k] = v
		}
		addrs[name] = penv["HTTP_ADDR"]
		procs[name] = startProc(t, name, name, penv)
	}
	store, err := chstore.Open(ctx, chstore.Config{Addr: ch.Addr(), Database: db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	// One job, submitted and followed by the CLI, whose root span goes to its own file.
	spec := events.Spec{Name: "obs-history", Program: "gethistory", Securities: securities(80),
		Fields: []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME"}, Start: "2025-01-01", End: "2025-12-31"}
	jobFile := writeJob(t, dir, "job.yaml", "name: "+spec.Name+"\nprogram: gethistory\nsecurities:\n"+yamlList(spec.Securities)+
		"fields: ["+strings.Join(spec.Fields, ", ")+"]\nstart: "+spec.Start+"\nend: "+spec.End+"\n")
	cliEnv := map[string]string{"MARKETPIPE_TRACE_FILE": filepath.Join(dir, "submit.spans")}
	for k, v := range env {
		cliEnv[k] = v
	}
	stdout, stderr, code := runCLI(t, ctx, cliEnv, "submit", jobFile, "--wait", "--timeout", "60s")
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s%s", code, stdout, stderr)
	}
	id := strings.TrimSpace(strings.SplitN(stdout, "\n", 2)[0])

	// The job's figures, as the jobs table keeps them once the loader recorded "loaded".
	var job events.Job
	obsWaitFor(t, ctx, "the jobs table to show the job loaded", func() bool {
		j, ok, err := store.Job(ctx, id)
		job = j
		return err == nil && ok && j.State == events.Loaded
	})
	want := len(expected(t, spec, runDate))
	if got := len(loaded(t, ctx, store, id)); got != want || job.RowsParsed != int64(want) || job.RowsLoaded != int64(want) {
		t.Fatalf("observations: %d in ClickHouse, jobs table parsed %d loaded %d; the simulator generated %d",
			got, job.RowsParsed, job.RowsLoaded, want)
	}
	if len(job.TraceID) != 32 || strings.Trim(job.TraceID, "0") == "" {
		t.Fatalf("jobs table trace id %q", job.TraceID)
	}
	if out, _, _ := runCLI(t, ctx, env, "status", id); !strings.Contains(out, job.TraceID) {
		t.Errorf("marketpipe status does not show the trace id %s:\n%s", job.TraceID, out)
	}
	t.Logf("job %s: %d observations, %d batches, %d polls, %d bytes, trace %s",
		id, want, job.Batches, job.Polls, job.FileSize, job.TraceID)

	t.Run("metrics", func(t *testing.T) {
		// The jobs stage records each of the job's six events; wait until it has, so that every
		// counter is final.
		var m map[string]obsMetrics
		obsWaitFor(t, ctx, "the jobs stage to record six events and every pending gauge to read 0", func() bool {
			m = map[string]obsMetrics{}
			for _, name := range obsStages {
				m[name] = obsScrape(t, addrs[name])
			}
			for _, name := range obsStages {
				if m[name].get("marketpipe_consumer_pending_messages") != 0 {
					return false
				}
			}
			return m["loader"].get("marketpipe_messages_handled_total", "stage", "jobs") == 6
		})
		checks := []struct {
			proc, metric string
			labels       []string
			want         float64
		}{
			{"requester", "marketpipe_messages_handled_total", []string{"stage", "requester"}, 1},
			{"poller", "marketpipe_messages_handled_total", []string{"stage", "poller"}, 1},
			{"poller", "marketpipe_messages_waiting_total", []string{"stage", "poller"}, float64(job.Polls - 1)},
			{"poller", "marketpipe_messages_redelivered_total", []string{"stage", "poller"}, float64(job.Polls - 1)},
			{"poller", "marketpipe_handler_seconds_count", []string{"stage", "poller"}, float64(job.Polls)},
			{"collector", "marketpipe_messages_handled_total", []string{"stage", "collector"}, 1},
			{"collector", "marketpipe_bytes_downloaded_total", nil, float64(job.FileSize)},
			{"transformer", "marketpipe_messages_handled_total", []string{"stage", "transformer"}, 1},
			{"transformer", "marketpipe_rows_parsed_total", nil, float64(want)},
			{"transformer", "marketpipe_rows_rejected_total", nil, float64(job.RowsRejected)},
			{"loader", "marketpipe_messages_handled_total", []string{"stage", "loader"}, float64(job.Batches)},
			{"loader", "marketpipe_messages_handled_total", []string{"stage", "loader-complete"}, 1},
			{"loader", "marketpipe_rows_loaded_total", nil, float64(want)},
			// Vendor calls by call and status: the request created, one listing per poll, one
			// download, whose listed size the ready event carries (each process also looks its account up
			// once).
			{"requester", "marketpipe_vendor_calls_total", []string{"call", "submit", "status", "201"}, 1},
			{"poller", "marketpipe_vendor_calls_total", []string{"call", "output", "status", "200"}, float64(job.Polls)},
			{"collector", "marketpipe_vendor_calls_total", []string{"call", "download", "status", "200"}, 1},
		}
		for _, name := range obsStages {
			for _, metric := range []string{"marketpipe_messages_failed_total", "marketpipe_messages_dead_lettered_total"} {
				checks = append(checks, struct {
					proc, metric string
					labels       []string
					want         float64
				}{name, metric, nil, 0})
			}
		}
		for _, c := range checks {
			if got := m[c.proc].get(c.metric, c.labels...); got != c.want {
				t.Errorf("%s: %s%v = %v, want %v", c.proc, c.metric, c.labels, got, c.want)
			}
		}
		// What the vendor answered, status by status, is what the processes counted.
		vendorCalls.mu.Lock()
		defer vendorCalls.mu.Unlock()
		for status, n := range vendorCalls.counts {
			sum := 0.0
			for _, name := range obsStages {
				sum += m[name].get("marketpipe_vendor_calls_total", "status", strconv.Itoa(status))
			}
			if sum != float64(n) {
				t.Errorf("vendor calls with status %d: the processes counted %v, the vendor answered %d", status, sum, n)
			}
		}
		for _, name := range obsStages {
			if !m[name].has("marketpipe_handler_seconds_bucket") {
				t.Errorf("%s exports no handler latency histogram", name)
			}
		}
	})

	// Stopping flushes the span exporters.
	for _, name := range slices.Backward(obsStages) {
		procs[name].stop(t)
	}

	t.Run("trace", func(t *testing.T) {
		spans := map[string]*obsSpan{} // by span id, of the job's trace
		var root *obsSpan
		var all int
		for _, file := range append([]string{"submit"}, obsStages...) {
			for _, sp := range readSpans(t, filepath.Join(dir, file+".spans")) {
				all++
				if sp.SpanContext.TraceID != job.TraceID {
					// Only one job ran: every span belongs to its trace.
					t.Errorf("%s: span %q in trace %s, want the job's trace %s", file, sp.Name, sp.SpanContext.TraceID, job.TraceID)
					continue
				}
				if svc := sp.service(); svc != file && !(file == "submit" && svc == "marketpipe") {
					t.Errorf("span %q in %s.spans has service.name %q", sp.Name, file, svc)
				}
				spans[sp.SpanContext.SpanID] = sp
				if !sp.hasParent() {
					if root != nil {
						t.Errorf("two root spans: %q and %q", root.Name, sp.Name)
					}
					root = sp
				}
			}
		}
		if root == nil || root.Name != "job "+spec.Name || root.service() != "marketpipe" {
			t.Fatalf("root span %+v, want the CLI's \"job %s\"", root, spec.Name)
		}
		t.Logf("%d spans, %d in the job's trace", all, len(spans))
		// Every span's parent is in the trace: no stage started a trace of its own.
		byName := map[string][]*obsSpan{}
		for _, sp := range spans {
			byName[sp.Name] = append(byName[sp.Name], sp)
			if sp.hasParent() && spans[sp.Parent.SpanID] == nil {
				t.Errorf("span %q (%s): parent %s is not in the trace", sp.Name, sp.service(), sp.Parent.SpanID)
			}
		}
		for name, n := range map[string]int{
			"requester": 1, "poller": job.Polls, "collector": 1, "transformer": 1, "loader": job.Batches,
			"loader-complete": -1, "jobs": 6,
			"vendor.Account": -1, "vendor.Submit": 1, "vendor.Output": job.Polls, "vendor.Download": 1,
			"objectstore.put": 1, "objectstore.get": 1, "transformer.parse": 1, "publish rows": job.Batches,
			"clickhouse.insert": -1, "clickhouse.record_job": 6,
		} {
			if got := len(byName[name]); got == 0 || (n >= 0 && got != n) {
				t.Errorf("%d spans %q, want %d", got, name, n)
			}
		}
		// From each row batch's load back to the root: every stage in order, each consumer span
		// the child of the producer span that published its message.
		for _, sp := range byName["loader"] {
			var chain []string
			for p := sp; p != nil; p = spans[p.Parent.SpanID] {
				if p.SpanKind == obsConsumer {
					chain = append(chain, p.Name)
					parent := spans[p.Parent.SpanID]
					if parent == nil || (parent.SpanKind != obsProducer && parent != root) {
						t.Errorf("%s span's parent is %+v, want the publish span of its message", p.Name, parent)
					}
				}
				if !p.hasParent() && p != root {
					t.Errorf("chain from a loader span ends at %q, not at the root", p.Name)
				}
			}
			if want := []string{"loader", "transformer", "collector", "poller", "requester"}; !slices.Equal(chain, want) {
				t.Errorf("stages from a loader span to the root: %v, want %v", chain, want)
			}
		}
		// The CLI's publish of "submitted" is a producer span under the root, and the
		// requester's parent.
		if r := byName["requester"]; len(r) == 1 {
			pub := spans[r[0].Parent.SpanID]
			if pub == nil || pub.SpanKind != obsProducer || pub.Parent.SpanID != root.SpanContext.SpanID {
				t.Errorf("requester span's parent %+v, want the CLI's publish span under the root %s", pub, root.SpanContext.SpanID)
			}
		}
		// Every poll is a span, each the child of the one "requested" publish.
		parents := map[string]bool{}
		for _, sp := range byName["poller"] {
			parents[sp.Parent.SpanID] = true
		}
		if len(parents) != 1 {
			t.Errorf("poll spans have %d different parents, want 1", len(parents))
		}
		// The inserts link to the loader spans of the batches they carried: each batch's span is
		// linked by exactly one insert, which is a child of one of its links.
		linked := map[string]int{}
		for _, ins := range byName["clickhouse.insert"] {
			isLink := false
			for _, l := range ins.Links {
				linked[l.SpanContext.SpanID]++
				if ld := spans[l.SpanContext.SpanID]; ld == nil || ld.Name != "loader" || l.SpanContext.TraceID != job.TraceID {
					t.Errorf("insert span links to %+v, want a loader span of the job", l.SpanContext)
				}
				isLink = isLink || l.SpanContext.SpanID == ins.Parent.SpanID
			}
			if !isLink {
				t.Errorf("insert span's parent %s is none of its links", ins.Parent.SpanID)
			}
		}
		for _, sp := range byName["loader"] {
			if linked[sp.SpanContext.SpanID] != 1 {
				t.Errorf("loader span %s linked by %d insert spans, want 1", sp.SpanContext.SpanID, linked[sp.SpanContext.SpanID])
			}
		}
		for _, sp := range byName["clickhouse.record_job"] {
			if p := spans[sp.Parent.SpanID]; p == nil || p.Name != "jobs" {
				t.Errorf("jobs-table write span's parent %+v, want a jobs span", p)
			}
		}
	})

	t.Run("logs", func(t *testing.T) {
		for _, name := range obsStages {
			lines := 0
			for _, rec := range readLogLines(t, procs[name].log.Name()) {
				if rec["job_id"] != id {
					continue
				}
				lines++
				if rec["service"] != name || rec["trace_id"] != job.TraceID || len(fmt.Sprint(rec["span_id"])) != 16 {
					t.Errorf("%s: log line about the job without its service, trace or span: %v", name, rec)
				}
			}
			if lines == 0 {
				t.Errorf("%s logged no line about job %s", name, id)
			}
		}
	})
}

// obsFreeAddr returns a loopback address with a port free at the time of the call.
func obsFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func obsWaitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// obsStatusCounter counts the vendor's answers by status code.
type obsStatusCounter struct {
	mu     sync.Mutex
	counts map[int]int
}

func (c *obsStatusCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &obsStatusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		c.mu.Lock()
		c.counts[rec.status]++
		c.mu.Unlock()
	})
}

type obsStatusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *obsStatusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *obsStatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// obsMetrics is one scrape of /metrics in the text format: series (name plus labels) → value.
type obsMetrics map[string]float64

var (
	obsSeriesRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	obsLabelRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func obsScrape(t *testing.T, addr string) obsMetrics {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	m := obsMetrics{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if g := obsSeriesRE.FindStringSubmatch(line); g != nil {
			v, err := strconv.ParseFloat(g[3], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			m[g[1]+"{"+g[2]+"}"] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// get sums the series of the metric that have all the given label pairs (0 if there is none,
// as for a counter vector that never counted).
func (m obsMetrics) get(name string, labels ...string) float64 {
	sum, _ := m.lookup(name, labels...)
	return sum
}

func (m obsMetrics) has(name string) bool {
	_, found := m.lookup(name)
	return found
}

func (m obsMetrics) lookup(name string, labels ...string) (float64, bool) {
	sum, found := 0.0, false
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		have := map[string]string{}
		for _, g := range obsLabelRE.FindAllStringSubmatch(rest, -1) {
			have[g[1]] = g[2]
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && have[labels[i]] == labels[i+1]
		}
		if match {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// obsSpan is a span as the console exporter (stdouttrace) writes it.
type obsSpan struct {
	Name        string
	SpanContext obsSpanContext
	Parent      obsSpanContext
	SpanKind    int
	Links       []struct{ SpanContext obsSpanContext }
	Resource    []struct {
		Key   string
		Value struct{ Value any }
	}
}

type obsSpanContext struct{ TraceID, SpanID string }

// Span kinds as stdouttrace numbers them (trace.SpanKind).
const (
	obsProducer = 4
	obsConsumer = 5
)

func (s *obsSpan) hasParent() bool { return strings.Trim(s.Parent.SpanID, "0") != "" }

func (s *obsSpan) service() string {
	for _, kv := range s.Resource {
		if kv.Key == "service.name" {
			return fmt.Sprint(kv.Value.Value)
		}
	}
	return ""
}

func readSpans(t *testing.T, path string) []*obsSpan {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("span file: %v", err)
	}
	var out []*obsSpan
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var sp obsSpan
		if err := dec.Decode(&sp); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, &sp)
	}
	if len(out) == 0 {
		t.Errorf("%s holds no spans", path)
	}
	return out
}

// readLogLines returns the JSON log records of a process's log file (other lines are skipped).
func readLogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(data), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}
