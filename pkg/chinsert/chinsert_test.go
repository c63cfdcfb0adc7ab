package chinsert

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

var testCols = []Column{
	{"s", "String"}, {"d", "Date"}, {"n", "Nullable(Float64)"}, {"k", "UInt8"}, {"v", "UInt64"}, {"t", "DateTime"},
}

// table creates a table of testCols in a fresh database and returns a config for it and a
// clickhouse-go connection to read it back.
func table(t *testing.T) (*chserver.Server, Config, clickhouse.Conn) {
	t.Helper()
	return tableOn(t, chtest.Start(t))
}

// tableOn is table on the server srv.
func tableOn(t *testing.T, srv *chserver.Server) (*chserver.Server, Config, clickhouse.Conn) {
	t.Helper()
	db := chtest.NewDatabase(t, srv)
	conn, err := chtest.Conn(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE TABLE `"+db+"`.t (s String, d Date, n Nullable(Float64), k UInt8, v UInt64, t DateTime) ENGINE = MergeTree ORDER BY (s, d)"); err != nil {
		t.Fatal(err)
	}
	return srv, Config{Addr: srv.Addr(), Database: db, User: "default"}, conn
}

type row struct {
	s string
	d uint16 // days since 1970-01-01
	n *float64
	k uint8
	v uint64
	t uint32
}

// values serializes rows as WriteBlock's columns.
func values(rows []row) func(col int, dst []byte) []byte {
	return func(col int, b []byte) []byte {
		switch col {
		case 0:
			for _, r := range rows {
				b = AppendString(b, r.s)
			}
		case 1:
			for _, r := range rows {
				b = binary.LittleEndian.AppendUint16(b, r.d)
			}
		case 2:
			for _, r := range rows {
				if r.n == nil {
					b = append(b, 1)
				} else {
					b = append(b, 0)
				}
			}
			for _, r := range rows {
				var f float64
				if r.n != nil {
					f = *r.n
				}
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
			}
		case 3:
			for _, r := range rows {
				b = append(b, r.k)
			}
		case 4:
			for _, r := range rows {
				b = binary.LittleEndian.AppendUint64(b, r.v)
			}
		case 5:
			for _, r := range rows {
				b = binary.LittleEndian.AppendUint32(b, r.t)
			}
		}
		return b
	}
}

func readBack(t *testing.T, conn clickhouse.Conn, db string) []row {
	t.Helper()
	rs, err := conn.Query(context.Background(), "SELECT s, d, n, k, v, t FROM `"+db+"`.t ORDER BY s, d")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var (
			r  row
			d  time.Time
			ts time.Time
		)
		if err := rs.Scan(&r.s, &d, &r.n, &r.k, &r.v, &ts); err != nil {
			t.Fatal(err)
		}
		r.d, r.t = uint16(d.Unix()/86400), uint32(ts.Unix())
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func f(v float64) *float64 { return &v }

// TestInsertRoundTrip inserts blocks in LZ4 frames and, with NoCompression, as they are: the
// bytes the client sends through a counting proxy show which it did.
func TestInsertRoundTrip(t *testing.T) {
	var sent [2]int64 // by NoCompression
	for i, noCompression := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoCompression=%v", noCompression), func(t *testing.T) {
			_, cfg, conn := table(t)
			cfg.NoCompression = noCompression
			var counted *atomic.Int64
			cfg.Addr, counted = countingProxy(t, cfg.Addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			long := strings.Repeat("x", 300) // a length of two varint bytes
			first := []row{
				{"a", 0, f(1.5), 1, 7, 1_700_000_000},
				{long, 20_000, nil, 0, math.MaxUint64, 0},
				{"é", math.MaxUint16, f(math.Inf(-1)), 255, 0, math.MaxUint32},
			}
			// A block larger than a compressed frame.
			var second []row
			for i := range 40_000 {
				second = append(second, row{fmt.Sprintf("b%06d-%s", i, strings.Repeat("y", i%50)), uint16(i), f(float64(i) / 7), uint8(i), uint64(i), uint32(i)})
			}
			p := NewPool(cfg, 1)
			defer p.Close()
			c, ins, err := p.Insert(ctx, "INSERT INTO t (s, d, n, k, v, t) VALUES", testCols)
			if err != nil {
				t.Fatal(err)
			}
			if s := c.Server(); s.Revision < revision || s.Name == "" {
				t.Errorf("server info %+v", s)
			}
			for _, rows := range [][]row{first, second} {
				if err := ins.WriteBlock(ctx, len(rows), values(rows)); err != nil {
					t.Fatal(err)
				}
			}
			if err := ins.Finish(ctx); err != nil {
				t.Fatal(err)
			}
			p.Put(c)
			sent[i] = counted.Load()

			got := readBack(t, conn, cfg.Database)
			want := append(append([]row(nil), first...), second...)
			if len(got) != len(want) {
				t.Fatalf("read %d rows, wrote %d", len(got), len(want))
			}
			byKey := map[string]row{}
			for _, r := range want {
				byKey[r.s] = r
			}
			for _, g := range got {
				w, ok := byKey[g.s]
				if !ok {
					t.Fatalf("unexpected row %q", g.s)
				}
				if g.d != w.d || g.k != w.k || g.v != w.v || g.t != w.t || (g.n == nil) != (w.n == nil) ||
					g.n != nil && math.Float64bits(*g.n) != math.Float64bits(*w.n) {
					t.Fatalf("row %.20q: read %+v, wrote %+v", g.s, g, w)
				}
			}

			// The connection is reused for the next INSERT.
			c2, ins, err := p.Insert(ctx, "INSERT INTO t (s, d, n, k, v, t) VALUES", testCols)
			if err != nil {
				t.Fatal(err)
			}
			if c2 != c {
				t.Error("a second INSERT dialled a new connection; want the idle one")
			}
			if err := ins.Finish(ctx); err != nil { // no block: nothing inserted
				t.Fatal(err)
			}
			p.Put(c2)
			if n := len(readBack(t, conn, cfg.Database)); n != len(want) {
				t.Errorf("%d rows after an empty INSERT, want %d", n, len(want))
			}
		})
	}
	// The second block's strings repeat "y": LZ4 sends well under half of it.
	if !(sent[0] > 0 && 2*sent[0] < sent[1]) {
		t.Errorf("the client sent %d bytes compressed and %d uncompressed; want compressed under half", sent[0], sent[1])
	}
}

// countingProxy forwards connections to addr until the test ends, and counts the bytes
// clients send.
func countingProxy(t *testing.T, addr string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			wg.Go(func() {
				io.Copy(countingWriter{s, &sent}, c)
				s.(*net.TCPConn).CloseWrite()
			})
			wg.Go(func() { io.Copy(c, s); c.(*net.TCPConn).CloseWrite() })
		}
	})
	return ln.Addr().String(), &sent
}

// countingWriter counts what it writes as it writes it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func TestInsertErrors(t *testing.T) {
	_, cfg, conn := table(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := NewPool(cfg, 2)
	defer p.Close()

	t.Run("unknown table", func(t *testing.T) {
		_, _, err := p.Insert(ctx, "INSERT INTO nope (s) VALUES", testCols[:1])
		var ex *Exception
		if !errors.As(err, &ex) || ex.Code != 60 || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("err = %v, want exception 60 naming the table", err)
		}
	})
	t.Run("columns the server does not expect", func(t *testing.T) {
		cols := append([]Column(nil), testCols...)
		cols[4].Type = "UInt32"
		_, _, err := p.Insert(ctx, "INSERT INTO t (s, d, n, k, v, t) VALUES", cols)
		if err == nil || !strings.Contains(err.Error(), "column 5: server expects v UInt64, client sends v UInt32") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("block the server cannot read", func(t *testing.T) {
		c, ins, err := p.Insert(ctx, "INSERT INTO t (s, d, n, k, v, t) VALUES", testCols)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Put(c)
		rows := []row{{"a", 1, nil, 1, 1, 1}, {"b", 2, nil, 2, 2, 2}}
		good := values(rows)
		// The UInt64 column one row short: the server reads the DateTime column's bytes as
		// its end, and the block runs out.
		err = ins.WriteBlock(ctx, len(rows), func(col int, dst []byte) []byte {
			if col == 4 {
				return binary.LittleEndian.AppendUint64(dst, 1)
			}
			return good(col, dst)
		})
		if err == nil {
			err = ins.Finish(ctx)
		}
		var ex *Exception
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want a server exception", err)
		}
		if c.Err() == nil {
			t.Error("connection still usable after a failed INSERT")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		bad := cfg
		bad.Password = "not-the-password"
		_, err := Dial(ctx, bad)
		var ex *Exception
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want a server exception", err)
		}
		if strings.Contains(err.Error(), bad.Password) {
			t.Errorf("the error shows the password: %v", err)
		}
	})
	if n := len(readBack(t, conn, cfg.Database)); n != 0 {
		t.Errorf("%d rows written by failed INSERTs", n)
	}
}

func TestPoolReplacesDeadConnection(t *testing.T) {
	srv, cfg, _ := tableOn(t, chtest.StartPrivate(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := NewPool(cfg, 1)
	defer p.Close()
	c, ins, err := p.Insert(ctx, "INSERT INTO t (s, d, n, k, v, t) VALUES", testCols)
	if err != nil {
		t.Fatal(err)
	}
	if err := ins.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	// The server restarts: the pool's idle connection is dead, and it does not know yet.
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	c2, ins, err := p.Insert(ctx, "INSERT INTO t (s, d, n, k, v, t) VALUES", testCols)
	if err != nil {
		t.Fatalf("INSERT after the idle connection died: %v", err)
	}
	if c2 == c {
		t.Error("the dead connection was used")
	}
	rows := []row{{"a", 1, f(2), 3, 4, 5}}
	if err := ins.WriteBlock(ctx, 1, values(rows)); err != nil {
		t.Fatal(err)
	}
	if err := ins.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	p.Put(c2)
	conn, err := chtest.Conn(srv) // a new one: the old pool's connections died too
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if n := len(readBack(t, conn, cfg.Database)); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

// A server that accepts the connection and never answers: every call ends by its timeout or
// its context.
func TestSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = Dial(context.Background(), Config{Addr: ln.Addr().String(), DialTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("handshake with a silent server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("handshake gave up after %v, want about the dial timeout", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err = Dial(ctx, Config{Addr: ln.Addr().String(), DialTimeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want one wrapping context.Canceled", err)
	}
}

// TestInsertSettings checks that Config.Settings reach the server, names and values: an
// unknown one is refused, a memory limit of one byte fails the INSERT, and one that changes
// nothing here lets it through.
func TestInsertSettings(t *testing.T) {
	_, cfg, _ := table(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows := []row{{"a", 1, nil, 1, 1, 1}}
	insert := func(settings ...Setting) error {
		c := cfg
		c.Settings = settings
		conn, err := Dial(ctx, c)
		if err != nil {
			return err
		}
		defer conn.Close()
		ins, err := conn.Insert(ctx, "INSERT INTO t (s, d, n, k, v, t) VALUES", testCols)
		if err != nil {
			return err
		}
		if err := ins.WriteBlock(ctx, len(rows), values(rows)); err != nil {
			return err
		}
		return ins.Finish(ctx)
	}
	for _, tc := range []struct {
		settings []Setting
		code     int32 // 0: no error
	}{
		{[]Setting{{"no_such_setting", 1}}, 115},                              // UNKNOWN_SETTING
		{[]Setting{{"max_memory_usage", 1}}, 241},                             // MEMORY_LIMIT_EXCEEDED
		{[]Setting{{"insert_quorum", 1}, {"insert_quorum_timeout", 5000}}, 0}, // ignored by MergeTree
	} {
		err := insert(tc.settings...)
		var ex *Exception
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%v: %v", tc.settings, err)
		case tc.code != 0 && (!errors.As(err, &ex) || ex.Code != tc.code):
			t.Errorf("%v: err = %v, want exception %d", tc.settings, err, tc.code)
		}
	}
}
