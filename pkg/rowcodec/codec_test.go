package rowcodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

var d0 = obs.MakeDate(2026, 1, 2)

func num(sec, field string, d obs.Date, v float64) obs.Observation {
	return obs.Observation{Security: sec, Field: field, Date: d, Kind: obs.Number, Num: v}
}

// sameBatch compares batches, numbers bit for bit (so -0 and NaN payloads count).
func sameBatch(t *testing.T, got, want *Batch) {
	t.Helper()
	if got.JobID != want.JobID || got.Program != want.Program || got.Generation != want.Generation ||
		got.Version != want.Version || got.Seq != want.Seq {
		t.Fatalf("header: got %q %q %d %d %d, want %q %q %d %d %d", got.JobID, got.Program,
			got.Generation, got.Version, got.Seq, want.JobID, want.Program, want.Generation, want.Version, want.Seq)
	}
	if len(got.Obs) != len(want.Obs) || len(got.Rejects) != len(want.Rejects) {
		t.Fatalf("got %d observations and %d rejects, want %d and %d",
			len(got.Obs), len(got.Rejects), len(want.Obs), len(want.Rejects))
	}
	for i := range want.Obs {
		g, w := &got.Obs[i], &want.Obs[i]
		if !g.Equal(w) || math.Float64bits(g.Num) != math.Float64bits(w.Num) {
			t.Fatalf("observation %d: got %+v, want %+v", i, *g, *w)
		}
	}
	for i := range want.Rejects {
		if got.Rejects[i] != want.Rejects[i] {
			t.Fatalf("reject %d: got %+v, want %+v", i, got.Rejects[i], want.Rejects[i])
		}
	}
}

func roundTrip(t *testing.T, b *Batch) *Batch {
	t.Helper()
	data, err := Encode(nil, b)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if len(data) > MaxMessageBytes {
		t.Fatalf("encoded %d bytes", len(data))
	}
	var got Batch
	if err := Decode(data, &got); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	// DecodeColumns gives the same rows, also into a ColumnBatch that held a larger batch
	// (every value of every kind) before.
	if err := DecodeColumns(data, &reusedColumns); err != nil {
		t.Fatalf("DecodeColumns: %v", err)
	}
	c := &reusedColumns.Cols
	for _, col := range []int{len(c.Security), len(c.Field), len(c.Flag), len(c.Kind), len(c.Num), len(c.Str)} {
		if col != c.Len() {
			t.Fatalf("DecodeColumns: columns of %d and %d rows", col, c.Len())
		}
	}
	var rows Batch
	reusedColumns.rows(&rows)
	sameBatch(t, &rows, &got)
	if err := DecodeColumns(stale, &reusedColumns); err != nil {
		t.Fatal(err)
	}
	return &got
}

// reusedColumns is where roundTrip decodes columns, after decoding stale into it.
var reusedColumns ColumnBatch

// stale is a batch of every kind of value, decoded into reusedColumns before each of
// roundTrip's decodings.
var stale = func() []byte {
	var os []obs.Observation
	for i := range 300 {
		os = append(os, obs.Observation{Security: fmt.Sprint("S", i%7), Field: fmt.Sprint("F", i%3), Date: d0 + obs.Date(i),
			Kind: obs.Kind(i % 4), Num: float64(i) / 3, Str: "stale", Flag: "N.A."})
		if os[i].Kind != obs.Number {
			os[i].Num = 0
		}
		if os[i].Kind < obs.String {
			os[i].Str = ""
		}
	}
	data, err := Encode(nil, &Batch{JobID: "stale", Obs: os, Rejects: []obs.Reject{{Line: 1, Raw: "r", Reason: "x"}}})
	if err != nil {
		panic(err)
	}
	return data
}()

func TestRoundTrip(t *testing.T) {
	negZero := math.Copysign(0, -1)
	payloadNaN := math.Float64frombits(0x7ff8_0000_dead_beef)
	tests := []struct {
		name string
		b    Batch
	}{
		{"empty", Batch{JobID: "j", Program: "getdata"}},
		{"every kind", Batch{JobID: "eod-prices-20261125t045724z-k3qa", Program: "gethistory", Generation: 2,
			Version: 1<<63 + 5, Seq: 7, Obs: []obs.Observation{
				{Security: "IBM US Equity", Field: "PX_LAST", Date: d0, Kind: obs.Number, Num: 123.45},
				{Security: "IBM US Equity", Field: "PX_VOLUME", Date: d0, Kind: obs.Null, Flag: "N.A."},
				{Security: "IBM US Equity", Field: "NAME", Date: d0, Kind: obs.String, Str: "INTL BUSINESS MACHINES"},
				{Security: "IBM US Equity", Field: "DVD_HIST", Date: d0, Kind: obs.Bulk, Str: `[["2026-01-02",1.68],["2025-11-10",1.68]]`},
				{Security: "BAD US Equity", Date: d0, Kind: obs.Null, Flag: "RC=10"},
				{Security: "IBM US Equity", Field: "PX_LAST", Date: d0 + 1, Kind: obs.Null, Flag: "BLANK"},
			}}},
		{"special numbers", Batch{JobID: "j", Program: "gethistory", Obs: []obs.Observation{
			num("A", "F", d0, math.NaN()), num("A", "F", d0, payloadNaN), num("A", "F", d0, math.Inf(1)),
			num("A", "F", d0, math.Inf(-1)), num("A", "F", d0, negZero), num("A", "F", d0, 0),
			num("A", "F", d0, 1.0/3), num("A", "F", d0, 1e300), num("A", "F", d0, -1e-300),
			num("A", "F", d0, math.SmallestNonzeroFloat64), num("A", "F", d0, math.MaxFloat64),
			num("A", "F", d0, 1<<53), num("A", "F", d0, 1<<53+2), num("A", "F", d0, -12.5),
			num("A", "F", d0, 0.000000001), num("A", "F", d0, 0.1234567891), num("A", "F", d0, 9007199254740.991),
			num("A", "F", d0, -123456789.12), num("A", "F", d0, 100),
		}}},
		{"decimals of several fields interleaved", Batch{JobID: "j", Program: "gethistory", Obs: []obs.Observation{
			num("A", "PX_LAST", d0, 101.25), num("A", "PX_VOLUME", d0, 1234567), num("A", "YLD", d0, 4.125),
			num("A", "PX_LAST", d0+1, 99.5), num("A", "PX_VOLUME", d0+1, 7654321), num("A", "YLD", d0+1, -0.001),
			num("B", "PX_LAST", d0, 1e-9), num("B", "PX_VOLUME", d0, 0),
		}}},
		{"empty strings", Batch{Obs: []obs.Observation{
			{Kind: obs.String}, {Kind: obs.Bulk}, {Kind: obs.Null},
			{Security: "", Field: "", Kind: obs.String, Str: ""},
		}}},
		{"unicode and odd bytes", Batch{JobID: "ü", Program: "gethistory", Obs: []obs.Observation{
			{Security: "Société Générale FP Equity", Field: "NAME", Date: d0, Kind: obs.String, Str: "日本電信電話 ✓ \x00\xff"},
			{Security: "Société Générale FP Equity", Field: "N", Date: d0, Kind: obs.String, Str: strings.Repeat("é", 300)},
		}}},
		{"dates far apart and negative", Batch{Obs: []obs.Observation{
			num("A", "F", math.MaxInt32, 1), num("A", "F", math.MinInt32, 2), num("A", "F", 0, 3), num("A", "F", -1, 4),
		}}},
		{"many securities and fields", Batch{JobID: "j", Obs: manyKeys(300, 200)}},
		{"rejects only", Batch{JobID: "j", Rejects: []obs.Reject{
			{Line: 12, Raw: "IBM US Equity|0|3|garbage", Reason: "3 fields declared, 1 value"},
			{Line: 0, Raw: "", Reason: ""}, {Line: -5, Raw: "ü\x00", Reason: "x"}, {Line: math.MaxInt64, Raw: "r", Reason: "y"},
		}}},
		{"observations and rejects", Batch{JobID: "j", Program: "getdata", Seq: 1,
			Obs: []obs.Observation{num("A", "F", d0, 1.5)}, Rejects: []obs.Reject{{Line: 3, Raw: "x|y", Reason: "bad"}}}},
		{"gethistory-like", Batch{JobID: "j", Program: "gethistory", Obs: historyObs(50, 250, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sameBatch(t, roundTrip(t, &tt.b), &tt.b)
			data, err := Encode(nil, &tt.b)
			if err != nil {
				t.Fatal(err)
			}
			samePeek(t, data, &tt.b)
		})
	}
}

// samePeek checks that Peek reads b's header from data.
func samePeek(t testing.TB, data []byte, b *Batch) {
	t.Helper()
	h, err := Peek(data)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	want := Header{JobID: b.JobID, Program: b.Program, Generation: b.Generation, Version: b.Version, Seq: b.Seq,
		Observations: len(b.Obs), Rejects: len(b.Rejects)}
	if h != want {
		t.Fatalf("Peek = %+v, want %+v", h, want)
	}
}

// A header longer than what Peek decompresses is read by decoding the whole batch.
func TestPeekLongHeader(t *testing.T) {
	b := Batch{JobID: strings.Repeat("j", peekBytes), Program: "gethistory", Generation: 3, Seq: 9,
		Obs: historyObs(20, 250, 1)}
	data, err := Encode(nil, &b)
	if err != nil {
		t.Fatal(err)
	}
	samePeek(t, data, &b)
}

func TestPeekErrors(t *testing.T) {
	data := sample(t)
	for n := range len(magic) + 3 {
		if _, err := Peek(data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("prefix of %d bytes: %v, want ErrCorrupt", n, err)
		}
	}
	c := bytes.Clone(data)
	c[len(magic)] = 9
	if _, err := Peek(c); !errors.Is(err, ErrVersion) {
		t.Errorf("version 9: %v, want ErrVersion", err)
	}
	if _, err := Peek(message(bodyOf("job", "prog", 1, 2, 3, MaxBatchRows+1))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("too many observations: %v, want ErrCorrupt", err)
	}
}

func manyKeys(nSec, nField int) []obs.Observation {
	var out []obs.Observation
	for s := range nSec {
		for f := range nField {
			if (s+f)%7 == 0 {
				out = append(out, num("S"+string(rune('A'+s%26))+strings.Repeat("x", s/26), "F"+strings.Repeat("Y", f), d0, float64(s*f)/8))
			}
		}
	}
	return out
}

// Only the members the Kind says are meaningful travel.
func TestRoundTripNormalizes(t *testing.T) {
	b := Batch{Obs: []obs.Observation{
		{Security: "A", Kind: obs.Null, Num: 5, Str: "x", Flag: "N.A."},
		{Security: "A", Kind: obs.Number, Num: 5, Str: "x"},
		{Security: "A", Kind: obs.String, Num: 5, Str: "x"},
	}}
	got := roundTrip(t, &b)
	want := []obs.Observation{
		{Security: "A", Kind: obs.Null, Flag: "N.A."},
		{Security: "A", Kind: obs.Number, Num: 5},
		{Security: "A", Kind: obs.String, Str: "x"},
	}
	for i := range want {
		if got.Obs[i] != want[i] {
			t.Errorf("%d: got %+v, want %+v", i, got.Obs[i], want[i])
		}
	}
}

func TestDecodeReusesSlices(t *testing.T) {
	data, err := Encode(nil, &Batch{Obs: historyObs(2, 10, 1), Rejects: []obs.Reject{{Line: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	b := Batch{Obs: make([]obs.Observation, 5, 1000), Rejects: make([]obs.Reject, 0, 10)}
	o0, r0 := &b.Obs[:1][0], &b.Rejects[:1][0]
	b.Obs[0].Str = "stale"
	if err := Decode(data, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Obs) != 100 || &b.Obs[0] != o0 || &b.Rejects[0] != r0 {
		t.Errorf("Decode did not reuse the arrays (len %d)", len(b.Obs))
	}
	if b.Obs[0].Str != "" {
		t.Errorf("stale string kept: %+v", b.Obs[0])
	}
}

func TestEncodeAppends(t *testing.T) {
	b := Batch{JobID: "j", Obs: historyObs(1, 5, 1)}
	data, err := Encode([]byte("prefix"), &b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("prefix")) {
		t.Fatal("prefix lost")
	}
	var got Batch
	if err := Decode(data[len("prefix"):], &got); err != nil {
		t.Fatal(err)
	}
	sameBatch(t, &got, &b)
}

func TestEncodeErrors(t *testing.T) {
	big := make([]obs.Observation, MaxBatchRows+1)
	tests := []struct {
		name    string
		b       Batch
		tooLong bool
	}{
		{"unknown kind", Batch{Obs: []obs.Observation{{Kind: 4}}}, false},
		{"negative seq", Batch{Seq: -1}, false},
		{"negative generation", Batch{Generation: -1}, false},
		{"too many rows", Batch{Obs: big}, true},
		{"too many rows with rejects", Batch{Obs: big[:MaxBatchRows], Rejects: []obs.Reject{{}}}, true},
		{"incompressible beyond the message bound", Batch{Obs: []obs.Observation{
			{Kind: obs.String, Str: randomString(1, MaxMessageBytes)}}}, true},
		{"body beyond MaxBodyBytes", Batch{Obs: []obs.Observation{
			{Kind: obs.String, Str: strings.Repeat("a", MaxBodyBytes)}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := Encode(dst, &tt.b)
			if err == nil {
				t.Fatal("Encode succeeded")
			}
			if errors.Is(err, ErrTooLarge) != tt.tooLong {
				t.Errorf("errors.Is(%v, ErrTooLarge) = %v", err, !tt.tooLong)
			}
			if string(out) != "keep" {
				t.Errorf("dst changed to %d bytes", len(out))
			}
		})
	}
}

func sample(t testing.TB) []byte {
	b := Batch{JobID: "eod-1", Program: "gethistory", Generation: 1, Version: 99, Seq: 3,
		Obs: append(historyObs(2, 3, 7), obs.Observation{Security: "X", Field: "NAME", Kind: obs.String, Str: "name"},
			obs.Observation{Security: "X", Field: "B", Kind: obs.Bulk, Str: "[[1]]"}, num("X", "F", d0, math.Pi)),
		Rejects: []obs.Reject{{Line: 9, Raw: "raw", Reason: "why"}}}
	data, err := Encode(nil, &b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecodeTruncated(t *testing.T) {
	data := sample(t)
	var b Batch
	for n := range len(data) {
		err := Decode(data[:n], &b)
		if err == nil {
			t.Fatalf("prefix of %d bytes decoded", n)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d bytes: %v does not wrap ErrCorrupt", n, err)
		}
	}
}

// Every single-byte change is detected (the zstd frame has a checksum) or, if it decodes,
// changes nothing.
func TestDecodeCorrupt(t *testing.T) {
	data := sample(t)
	var want Batch
	if err := Decode(data, &want); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(data)
			c[i] ^= x
			var got Batch
			if err := Decode(c, &got); err == nil {
				sameBatch(t, &got, &want)
			} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("byte %d ^ %#x: %v wraps neither ErrCorrupt nor ErrVersion", i, x, err)
			}
		}
	}
	var b Batch
	if err := Decode(append(bytes.Clone(data), 0), &b); err == nil {
		t.Error("trailing byte accepted")
	}
}

func TestDecodeVersion(t *testing.T) {
	for _, v := range []byte{0, formatVersion + 1} {
		data := sample(t)
		data[4] = v
		var b Batch
		if err := Decode(data, &b); !errors.Is(err, ErrVersion) || errors.Is(err, ErrCorrupt) {
			t.Errorf("version %d: got %v, want ErrVersion", v, err)
		}
	}
}

// TestSnapshotAtRoundTrip: a snapshot batch's time survives Encode, Decode and Peek, and a batch
// of format version 1 (no snapshot time) still decodes, with SnapshotAt 0.
func TestSnapshotAtRoundTrip(t *testing.T) {
	in := Batch{JobID: "j", Program: "getdata", Version: 7, Seq: 3, SnapshotAt: 1765988350,
		Obs: []obs.Observation{{Security: "A", Field: "F", Date: 20000, Kind: obs.Number, Num: 1.5}}}
	data, err := Encode(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	var out Batch
	if err := Decode(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.SnapshotAt != in.SnapshotAt {
		t.Errorf("Decode: SnapshotAt %d, want %d", out.SnapshotAt, in.SnapshotAt)
	}
	if h, err := Peek(data); err != nil || h.SnapshotAt != in.SnapshotAt {
		t.Errorf("Peek: %+v, %v", h, err)
	}
	// Version 1: the same body without the snapshot time.
	v1 := bodyOf("j", "getdata", 0, 7, 3, 1, 0, 1, "A", 0, 1, "F", []byte{1}, 0, 1, "", 0,
		binary.AppendVarint(nil, 20000), []byte{wireDecimal}, 30)
	old := append([]byte(magic), 1)
	old = binary.AppendUvarint(old, uint64(len(v1)))
	old = zEncoder().EncodeAll(v1, old)
	out = Batch{}
	if err := Decode(old, &out); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	if out.SnapshotAt != 0 || out.Seq != 3 || len(out.Obs) != 1 || out.Obs[0].Num != 1.5 {
		t.Errorf("version 1 decoded %+v", out)
	}
	if h, err := Peek(old); err != nil || h.Seq != 3 || h.Observations != 1 {
		t.Errorf("version 1 Peek: %+v, %v", h, err)
	}
}

// message wraps a hand-made body, to test the body checks behind the compression.
func message(body []byte) []byte {
	m := append([]byte(magic), formatVersion)
	m = binary.AppendUvarint(m, uint64(len(body)))
	return zEncoder().EncodeAll(body, m)
}

// bodyOf builds a body from pieces: strings are written as str, ints as uvarints, []byte raw.
func bodyOf(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = appendStr(b, v)
		case int:
			b = binary.AppendUvarint(b, uint64(v))
		case []byte:
			b = append(b, v...)
		}
	}
	return b
}

func TestDecodeBadBodies(t *testing.T) {
	hdr := []any{"j", "p", 0, 0, 0, 0} // job, program, generation, version, seq, snapshot time
	// one observation: security A, field F (exponent 0), flag "", date 0, then kind and value.
	one := func(kind byte, rest ...any) []byte {
		parts := append(append([]any{}, hdr...), 1, 0, 1, "A", 0, 1, "F", []byte{0}, 0, 1, "", 0, 0, []byte{kind})
		return bodyOf(append(parts, rest...)...)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"good (control)", message(one(wireDecimal, 7)), ""},
		{"not a batch", []byte("hello, world"), "no row batch header"},
		{"too short", []byte("MPRB"), "no row batch header"},
		{"huge body length", append([]byte("MPRB\x01"), binary.AppendUvarint(nil, MaxBodyBytes+1)...), "bad body length"},
		{"body length lies", func() []byte {
			m := message(one(wireDecimal, 7))
			m[5]++
			return m
		}(), "body of"},
		{"not zstd", []byte("MPRB\x01\x05hello"), "decompress"},
		{"empty body", message(nil), "truncated"},
		{"too many observations", message(bodyOf(append(hdr, MaxBatchRows+1, 0)...)), "observations 100001"},
		{"too many rows", message(bodyOf(append(hdr, MaxBatchRows, 1)...)), "rejects 1"},
		{"counts beyond the data", message(bodyOf(append(hdr, 1000, 0, 0)...)), "1000 observations and 0 rejects"},
		{"generation beyond int32", message(bodyOf("j", "p", math.MaxInt32+1, 0, 0, 0, 0)), "generation"},
		{"security index out of range", message(bodyOf(append(hdr, 1, 0, 1, "A", 1, 1, "F", []byte{0}, 0, 1, "", 0, 0, []byte{0})...)), "index 1 in a dictionary of 1"},
		{"empty dictionary", message(bodyOf(append(hdr, 1, 0, 0, 0, 1, "F", []byte{0}, 0, 1, "", 0, 0, []byte{0})...)), "index 0 in a dictionary of 0"},
		{"dictionary larger than rows", message(bodyOf(append(hdr, 1, 0, 2, "A", "B", 0, 1, "F", []byte{0}, 0, 1, "", 0, 0, []byte{0})...)), "dictionary size 2"},
		{"string past the end", message(bodyOf("j", 50)), "string of 50 bytes"},
		{"exponent too large", message(bodyOf(append(hdr, 1, 0, 1, "A", 0, 1, "F", []byte{10}, 0, 1, "", 0, 0, []byte{1}, 0)...)), "decimal exponent 10"},
		{"unknown kind", message(one(5)), "kind 5"},
		{"float truncated", message(one(wireFloat, []byte{1, 2, 3})), "truncated"},
		{"string value missing", message(one(wireString)), "truncated"},
		{"trailing bytes", message(one(wireDecimal, 7, 0)), "1 bytes after the last row"},
		{"varint overflow", message(bodyOf("j", "p", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})), "varint overflows"},
		{"date out of range", message(bodyOf(append(hdr, 2, 0, 1, "A", 0, 0, 1, "F", []byte{0}, 0, 0, 1, "", 0, 0,
			binary.AppendVarint(binary.AppendVarint(nil, math.MaxInt32), 1), []byte{0, 0})...)), "date out of range"},
		{"reject truncated", message(bodyOf(append(hdr, 0, 1, 0, 0, 0, 2, "r")...)), "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Batch
			err := Decode(tt.data, &b)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("control case: %v", err)
				}
				if len(b.Obs) != 1 || b.Obs[0].Num != -4 { // uvarint 7 is zigzag -4
					t.Fatalf("control case decoded %+v", b.Obs)
				}
				return
			}
			if err == nil {
				t.Fatalf("decoded %+v", b)
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrCorrupt mentioning %q", err, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample(f))
	for _, b := range []Batch{
		{},
		{JobID: "j", Obs: historyObs(3, 20, 2)},
		{Obs: []obs.Observation{{Kind: obs.String, Str: "ü"}, num("A", "F", 1, math.NaN())}, Rejects: []obs.Reject{{Line: 1, Raw: "r"}}},
	} {
		data, err := Encode(nil, &b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("MPRB\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Peek(data); err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("Peek: error %v wraps neither ErrCorrupt nor ErrVersion", err)
		}
		var b Batch
		if err := Decode(data, &b); err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		samePeek(t, data, &b)
		checkStable(t, &b)
	})
}

// FuzzDecodeBody fuzzes the body parser behind the compression, which FuzzDecode's mutations
// rarely reach: almost every change to a zstd frame fails its checksum.
func FuzzDecodeBody(f *testing.F) {
	e := newEncoder()
	for _, b := range []Batch{
		{JobID: "eod-1", Program: "gethistory", Seq: 1, Obs: historyObs(2, 4, 3), Rejects: []obs.Reject{{Line: 2, Raw: "x", Reason: "y"}}},
		{Obs: []obs.Observation{{Security: "S", Field: "N", Kind: obs.String, Str: "s"}, {Kind: obs.Bulk, Str: "[]"},
			num("S", "F", 1, 1.0/3), num("S", "F", 2, 2.5), {Kind: obs.Null, Flag: "N.A."}}},
	} {
		if err := e.encodeBody(&b); err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.Clone(e.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var cb ColumnBatch
		r := reader{s: string(body)}
		r.decodeBody(&cb)
		if r.err != nil {
			if !errors.Is(r.err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", r.err)
			}
			return
		}
		var b Batch
		cb.rows(&b)
		checkStable(t, &b)
	})
}

// checkStable: a decoded batch encodes again, and decodes to itself.
func checkStable(t *testing.T, b *Batch) {
	data, err := Encode(nil, b)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return // a different but valid encoding of a near-limit batch
		}
		t.Fatalf("re-encode: %v", err)
	}
	var again Batch
	if err := Decode(data, &again); err != nil {
		t.Fatalf("decode re-encoded: %v", err)
	}
	sameBatch(t, &again, b)
}
