package events_test

import (
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// The runtime labels logs, spans and attempt records with what JobIDOfSubject finds, and names
// publish spans with SubjectKind: both follow the subjects events declares.
func TestJobIDOfSubjectAndSubjectKind(t *testing.T) {
	for _, c := range []struct {
		subject string
		id      string
		ok      bool
		kind    string
	}{
		{events.JobSubject("j-1", events.Requested), "j-1", true, events.Requested},
		{events.RowsSubject("j-2"), "j-2", true, "rows"},
		{events.RowsSubject("x.y"), "x.y", true, "rows"}, // unchecked: ValidJobID refuses it
		{events.ChunkSubject("j-3"), "j-3", true, "chunk"},
		{events.DLQSubject("loader"), "", false, "dlq.loader"},
		{"mp.job.j-1", "", false, "job.j-1"},
		{"t.work", "", false, "t.work"},
	} {
		id, ok := events.JobIDOfSubject(c.subject)
		if id != c.id || ok != c.ok {
			t.Errorf("JobIDOfSubject(%q) = %q, %v; want %q, %v", c.subject, id, ok, c.id, c.ok)
		}
		if got := events.SubjectKind(c.subject); got != c.kind {
			t.Errorf("SubjectKind(%q) = %q, want %q", c.subject, got, c.kind)
		}
	}
}
