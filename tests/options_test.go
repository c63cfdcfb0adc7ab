package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// TestCorporateActions runs a getactions job through the five stages: every action the
// simulator's file holds is loaded, row for row.
func TestCorporateActions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := startPipeline(t, ctx)
	secs := securities(8)
	path := writeJob(t, t.TempDir(), "actions.yaml", "name: actions\nprogram: getactions\nsecurities:\n"+yamlList(secs)+
		"start: 2025-01-01\nend: 2026-06-30\n")
	out, stderr, code := runCLI(t, ctx, p.env, "submit", path, "--wait", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("submit: exit %d: %s%s", code, out, stderr)
	}
	id := strings.TrimSpace(out)
	spec := events.Spec{Name: "actions", Program: events.GetActions, Securities: secs, Start: "2025-01-01", End: "2026-06-30"}
	want := expected(t, spec, p.runDate)
	if len(want) == 0 {
		t.Fatal("the simulator has no corporate actions for these securities: the test would check nothing")
	}
	compare(t, loaded(t, ctx, p.store, id), want)
}
