package obs_test

import (
	"math"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// ColumnsOf lists each distinct security, field and flag once, in order of appearance, and
// gives back the rows it was made of.
func TestColumnsOf(t *testing.T) {
	d := obs.MakeDate(2026, 1, 2)
	rows := []obs.Observation{
		{Security: "A", Field: "PX_LAST", Date: d, Kind: obs.Number, Num: 1.5},
		{Security: "A", Field: "NAME", Date: d, Kind: obs.String, Str: "A INC"},
		{Security: "B", Field: "PX_LAST", Date: d + 1, Kind: obs.Null, Flag: "N.A."},
		{Security: "B", Field: "PX_LAST", Date: d + 2, Kind: obs.Number, Num: math.NaN()},
	}
	c := obs.ColumnsOf(rows)
	if c.Len() != len(rows) || len(c.Securities) != 2 || len(c.Fields) != 2 || len(c.Flags) != 2 {
		t.Fatalf("columns %+v: want 4 rows, 2 securities, 2 fields, 2 flags", c)
	}
	for i, o := range c.Rows() {
		if !o.Equal(&rows[i]) {
			t.Errorf("row %d = %+v, want %+v", i, o, rows[i])
		}
	}
	if n := obs.ColumnsOf(nil).Len(); n != 0 {
		t.Errorf("ColumnsOf(nil) has %d rows", n)
	}
}
