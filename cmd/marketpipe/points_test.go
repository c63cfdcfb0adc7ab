package main

import (
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
)

func TestPointsOf(t *testing.T) {
	inc := events.Spec{Program: events.GetHistory, Incremental: true}
	for _, c := range []struct {
		j    events.Job
		want string
	}{
		{events.Job{State: events.Loaded, PointsRequested: 1032, RowsLoaded: 1030}, "requested 1032, saved 1030"},
		{events.Job{State: events.Loaded, PointsRequested: 520, RowsLoaded: 520, Spec: inc}, "requested 520, saved 520 (incremental: only what earlier runs had not loaded)"},
		{events.Job{State: events.Loaded, Spec: inc}, "requested 0, saved 0 (incremental: earlier runs had loaded every security and date"},
		{events.Job{State: events.Submitted, Spec: inc}, ""},                             // not counted yet
		{events.Job{State: events.Loaded, Spec: events.Spec{Program: "getactions"}}, ""}, // not counted
	} {
		got := pointsOf(&c.j)
		if c.want == "" && got != "" || c.want != "" && !strings.HasPrefix(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.j, got, c.want)
		}
	}
}
