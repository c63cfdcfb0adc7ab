package tests

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/natstest"
)

// TestStuckJobSaysWhy submits a job while the vendor refuses connections: `submit --wait` and
// `status` (text and JSON) must show the requester's last error, its attempts and the next
// attempt, and the requester's /readyz must answer 503 naming the vendor.
func TestStuckJobSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vendorAddr := ln.Addr().String()
	ln.Close() // nothing listens there: connections are refused
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		"VENDOR_URL": "http://" + vendorAddr + "/eap",
	}
	withAddr := func(addr string) map[string]string {
		m := map[string]string{"HTTP_ADDR": addr}
		for k, v := range env {
			m[k] = v
		}
		return m
	}
	startProc(t, "requester", "requester", withAddr(httpAddr))
	startProc(t, "loader", "loader", withAddr("127.0.0.1:0"))

	job := writeJob(t, t.TempDir(), "stuck.yaml", "name: stuck\nprogram: getdata\nsecurities: [IBM US Equity]\nfields: [PX_LAST]\n")
	stdout, stderr, code := runCLI(t, ctx, env, "submit", job, "--wait", "--timeout", "20s")
	id := strings.TrimSpace(stdout)
	if code == 0 || id == "" {
		t.Fatalf("submit --wait: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"failing", "requester: retrying after", "connection refused", "next attempt at"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("submit --wait does not say %q:\n%s", want, stderr)
		}
	}

	var out string
	waitUntil(t, ctx, "status showing the failing attempts", func() bool {
		out, _, code = runCLI(t, ctx, env, "status", id)
		return code == 0 && strings.Contains(out, "requester: retrying after")
	})
	for _, want := range []string{"state", "submitted", "connection refused", "failed attempt(s)", "next attempt at"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not say %q:\n%s", want, out)
		}
	}
	t.Logf("submit --wait:\n%s\nstatus:\n%s", stderr, out)
	out, _, code = runCLI(t, ctx, env, "status", id, "--json")
	var st struct {
		State    string `json:"state"`
		Attempts []struct {
			Stage    string    `json:"stage"`
			Attempts int       `json:"attempts"`
			Error    string    `json:"error"`
			NextAt   time.Time `json:"next_at"`
		} `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v:\n%s", code, err, out)
	}
	if len(st.Attempts) != 1 || st.Attempts[0].Stage != "requester" || st.Attempts[0].Attempts < 1 ||
		!strings.Contains(st.Attempts[0].Error, "connection refused") || st.Attempts[0].NextAt.IsZero() {
		t.Errorf("status --json attempts: %+v", st.Attempts)
	}

	var body string
	waitUntil(t, ctx, "requester not ready, naming the vendor", func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	t.Logf("/readyz:\n%s", body)
	for _, want := range []string{"vendor: vendor http://" + vendorAddr + " unreachable", "stage requester: ok", "nats: ok"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz does not say %q:\n%s", want, body)
		}
	}
}
