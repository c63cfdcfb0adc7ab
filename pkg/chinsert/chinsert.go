// Package chinsert is a small client of ClickHouse's native TCP protocol that does one thing:
// run an INSERT whose blocks the caller serializes column by column.
//
// clickhouse-go, which marketpipe uses for everything else, takes Go values and copies them
// into its own column buffers before encoding them; for the loader, which only passes rows
// on, that copying cost as much CPU as the rest of the INSERT (bench/cmd/mpbench profiles).
// Here the caller appends each column's values in ClickHouse's native format straight into
// the block, which is LZ4-compressed and sent as it is.
//
// The client speaks protocol revision 54213 (that of ClickHouse 1.1.54213, which
// clickhouse-go v1 speaks too). A server answers a client in the client's revision, so at this
// revision no packet carries a field this package does not know: no server logs, no
// table-column metadata, no profile events, settings in the old binary form (integer ones only, Config.Settings).
// Its tests run against 18.16, the server this project's tests have; current releases still
// serve clients of old revisions, but none was at hand to run them against.
//
// A Conn runs one INSERT at a time. Any error leaves it unusable (Err reports it); Pool then
// drops it.
package chinsert

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/ClickHouse/ch-go/compress"
)

const (
	clientName = "marketpipe"
	// revision is the protocol revision this client speaks.
	revision = 54213
	// Revisions that added what this client reads or writes.
	revClientInfo = 54032 // Query carries the client's info
	revTimezone   = 54058 // Hello answer carries the server's time zone
	revQuotaKey   = 54060 // client info carries a quota key

	// frameSize is how much of a block goes into one compressed frame, as ClickHouse's own
	// client does (DBMS_DEFAULT_BUFFER_SIZE).
	frameSize = 1 << 20
	// maxString bounds a string read from the server (names, types, exception texts).
	maxString = 16 << 20
)

// Client packet types.
const (
	clientHello = 0
	clientQuery = 1
	clientData  = 2
)

// Server packet types.
const (
	serverHello       = 0
	serverData        = 1
	serverException   = 2
	serverProgress    = 3
	serverEndOfStream = 5
	serverProfileInfo = 6
)

// Config says where the server is and how long to wait for it.
type Config struct {
	Addr     string // host:port of the native protocol
	Database string // the connection's default database
	User     string
	Password string
	// DialTimeout bounds connecting and the handshake (default 5s).
	DialTimeout time.Duration
	// ReadTimeout bounds each call's exchange with the server when the context has no
	// earlier deadline (default 2m), so a server that stops answering cannot hang a caller.
	ReadTimeout time.Duration
	// NoCompression sends blocks as they are instead of in LZ4 frames: less CPU on both
	// sides, more bytes on the wire.
	NoCompression bool
	// TLS, when set, wraps the connection in TLS (the server's tcp_port_secure).
	TLS *tls.Config
	// Settings are sent with every INSERT. Only settings whose values are integers (UInt64,
	// Bool, Milliseconds, Seconds: insert_quorum, insert_quorum_timeout) can be: at this
	// revision a setting travels as its name and its value in the setting's own binary form,
	// which for those is a varint.
	Settings []Setting
}

// Setting is a server setting of an integer value (Config.Settings).
type Setting struct {
	Name  string
	Value uint64
}

func (c *Config) defaults() {
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 2 * time.Minute
	}
}

// ServerInfo is what the server says of itself in the handshake.
type ServerInfo struct {
	Name         string
	Major, Minor uint64
	Revision     uint64
	Timezone     string
}

// Exception is an error the server sent.
type Exception struct {
	Code    int32
	Name    string
	Message string
	Nested  *Exception
}

func (e *Exception) Error() string {
	msg := fmt.Sprintf("clickhouse exception %d (%s): %s", e.Code, e.Name, e.Message)
	if e.Nested != nil {
		msg += "; caused by: " + e.Nested.Error()
	}
	return msg
}

// ErrProtocol is wrapped by errors for packets this client did not expect or could not read.
var ErrProtocol = errors.New("clickhouse native protocol")

// Column is the name and ClickHouse type of one column of an INSERT.
type Column struct {
	Name, Type string
}

// Conn is one connection. It is not safe for concurrent use.
type Conn struct {
	cfg    Config
	nc     net.Conn
	r      *bufio.Reader
	out    []byte // packet being written
	block  []byte // block being serialized
	zw     *compress.Writer
	server ServerInfo
	rev    uint64 // revision both sides speak
	err    error  // sticky
	used   time.Time
}

// Dial connects and does the handshake.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(cfg.Addr)
		}
		conn := tls.Client(nc, tc)
		if err := conn.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("clickhouse %s: TLS: %w", cfg.Addr, err)
		}
		nc = conn
	}
	c := &Conn{cfg: cfg, nc: nc, r: bufio.NewReaderSize(nc, 64<<10), zw: compress.NewWriter(compress.LevelZero, compress.LZ4),
		used: time.Now()}
	if err := c.handshake(ctx); err != nil {
		nc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("clickhouse %s: handshake: %w", cfg.Addr, err)
	}
	return c, nil
}

func (c *Conn) handshake(ctx context.Context) error {
	defer c.watch(ctx)()
	b := binary.AppendUvarint(c.out[:0], clientHello)
	b = AppendString(b, clientName)
	b = binary.AppendUvarint(b, 1) // client version major
	b = binary.AppendUvarint(b, 0) // minor
	b = binary.AppendUvarint(b, revision)
	b = AppendString(b, c.cfg.Database)
	b = AppendString(b, c.cfg.User)
	b = AppendString(b, c.cfg.Password)
	c.out = b
	if err := c.write(b); err != nil {
		return err
	}
	p, err := c.uvarint()
	if err != nil {
		return err
	}
	switch p {
	case serverHello:
	case serverException:
		return c.exception()
	default:
		return fmt.Errorf("packet %d instead of hello: %w", p, ErrProtocol)
	}
	s := &c.server
	if s.Name, err = c.str(); err != nil {
		return err
	}
	if s.Major, err = c.uvarint(); err != nil {
		return err
	}
	if s.Minor, err = c.uvarint(); err != nil {
		return err
	}
	if s.Revision, err = c.uvarint(); err != nil {
		return err
	}
	c.rev = min(s.Revision, revision)
	if c.rev < revClientInfo {
		return fmt.Errorf("server %s %d.%d speaks protocol revision %d, older than %d: %w",
			s.Name, s.Major, s.Minor, s.Revision, revClientInfo, ErrProtocol)
	}
	if c.rev >= revTimezone {
		if s.Timezone, err = c.str(); err != nil {
			return err
		}
	}
	return nil
}

// Server returns what the server said of itself.
func (c *Conn) Server() ServerInfo { return c.server }

// Err returns the error that made the connection unusable, or nil.
func (c *Conn) Err() error { return c.err }

// Close closes the connection.
func (c *Conn) Close() error {
	if c.err == nil {
		c.err = net.ErrClosed
	}
	return c.nc.Close()
}

// watch bounds the exchanges that follow by ctx and by ReadTimeout, and makes ctx's
// cancellation interrupt them; the returned function ends that.
func (c *Conn) watch(ctx context.Context) (stop func()) {
	dl := time.Now().Add(c.cfg.ReadTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.nc.SetDeadline(dl)
	unwatch := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	return func() { unwatch() }
}

// fail makes err the connection's sticky error and closes it; later calls return it.
func (c *Conn) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.As(err, new(*Exception)) {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if c.err == nil {
		c.err = err
		c.nc.Close()
	}
	return err
}

func (c *Conn) write(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// Insert starts an INSERT: query is the statement without data ("INSERT INTO t (a, b)
// VALUES" or "... FORMAT Native"; name the columns, as 18.16 requires), cols the columns the
// blocks will hold, which must be those the server expects, in its order and with its types.
// Write the blocks with WriteBlock and end with Finish; or give up with the Conn's Close.
func (c *Conn) Insert(ctx context.Context, query string, cols []Column) (*Insert, error) {
	if c.err != nil {
		return nil, fmt.Errorf("insert: connection unusable: %w", c.err)
	}
	c.used = time.Now()
	defer c.watch(ctx)()
	b := binary.AppendUvarint(c.out[:0], clientQuery)
	b = AppendString(b, "") // query id: the server makes one
	// Client info.
	b = append(b, 1)                 // query kind: initial
	b = AppendString(b, "")          // initial user
	b = AppendString(b, "")          // initial query id
	b = AppendString(b, "0.0.0.0:0") // initial address
	b = append(b, 1)                 // interface: TCP
	b = AppendString(b, osUser)
	b = AppendString(b, hostname)
	b = AppendString(b, clientName)
	b = binary.AppendUvarint(b, 1) // major
	b = binary.AppendUvarint(b, 0) // minor
	b = binary.AppendUvarint(b, revision)
	if c.rev >= revQuotaKey {
		b = AppendString(b, "") // quota key
	}
	for _, st := range c.cfg.Settings {
		b = AppendString(b, st.Name)
		b = binary.AppendUvarint(b, st.Value)
	}
	b = AppendString(b, "")        // end of the settings
	b = binary.AppendUvarint(b, 2) // stage: complete
	b = binary.AppendUvarint(b, compressionFlag(c.cfg.NoCompression))
	b = AppendString(b, query)
	// An empty block: the end of the external tables (none).
	b, err := c.appendData(b, appendBlockHeader(c.block[:0], 0, 0))
	c.out = b
	if err != nil {
		return nil, c.fail(ctx, fmt.Errorf("insert: %w", err))
	}
	if err := c.write(b); err != nil {
		return nil, c.fail(ctx, fmt.Errorf("insert: send query: %w", err))
	}
	// The server answers with the columns it expects: a block of no rows.
	for {
		p, err := c.uvarint()
		if err != nil {
			return nil, c.fail(ctx, fmt.Errorf("insert: read table structure: %w", err))
		}
		switch p {
		case serverData:
			got, err := c.readHeaderBlock()
			if err != nil {
				return nil, c.fail(ctx, fmt.Errorf("insert: read table structure: %w", err))
			}
			if err := sameColumns(got, cols); err != nil {
				// The server waits for data; the connection cannot be reused.
				return nil, c.fail(ctx, fmt.Errorf("insert: %w", err))
			}
			return &Insert{c: c, cols: cols}, nil
		case serverException:
			return nil, c.fail(ctx, fmt.Errorf("insert: %w", c.exception()))
		case serverProgress:
			if err := c.skipProgress(); err != nil {
				return nil, c.fail(ctx, fmt.Errorf("insert: %w", err))
			}
		default:
			return nil, c.fail(ctx, fmt.Errorf("insert: packet %d instead of the table structure: %w", p, ErrProtocol))
		}
	}
}

func sameColumns(got, want []Column) error {
	if len(got) != len(want) {
		return fmt.Errorf("server expects %d columns %v, client sends %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("column %d: server expects %s %s, client sends %s %s", i+1,
				got[i].Name, got[i].Type, want[i].Name, want[i].Type)
		}
	}
	return nil
}

// Insert is an INSERT under way.
type Insert struct {
	c    *Conn
	cols []Column
	rows int
}

// WriteBlock sends a block of rows rows: values is called for each column in turn, with the
// block so far, and appends the column's rows rows in ClickHouse's native format (for a
// String, each value as a uvarint length and its bytes; for numbers, dates and date-times,
// their little-endian integers; for Nullable(T), the rows' null bytes, then T's values).
func (ins *Insert) WriteBlock(ctx context.Context, rows int, values func(col int, dst []byte) []byte) error {
	c := ins.c
	if c.err != nil {
		return fmt.Errorf("insert block: connection unusable: %w", c.err)
	}
	defer c.watch(ctx)()
	blk := appendBlockHeader(c.block[:0], len(ins.cols), rows)
	for i, col := range ins.cols {
		blk = AppendString(blk, col.Name)
		blk = AppendString(blk, col.Type)
		blk = values(i, blk)
	}
	c.block = blk
	b, err := c.appendData(c.out[:0], blk)
	c.out = b
	if err != nil {
		return c.fail(ctx, fmt.Errorf("insert block: %w", err))
	}
	if err := c.write(b); err != nil {
		return c.fail(ctx, c.explain(fmt.Errorf("insert block: send: %w", err)))
	}
	ins.rows += rows
	return nil
}

// Finish ends the INSERT and waits for the server to have written it.
func (ins *Insert) Finish(ctx context.Context) error {
	c := ins.c
	if c.err != nil {
		return fmt.Errorf("insert: connection unusable: %w", c.err)
	}
	defer c.watch(ctx)()
	b, err := c.appendData(c.out[:0], appendBlockHeader(c.block[:0], 0, 0))
	c.out = b
	if err != nil {
		return c.fail(ctx, fmt.Errorf("insert: %w", err))
	}
	if err := c.write(b); err != nil {
		return c.fail(ctx, c.explain(fmt.Errorf("insert: send end: %w", err)))
	}
	for {
		p, err := c.uvarint()
		if err != nil {
			return c.fail(ctx, fmt.Errorf("insert of %d rows: wait for the server: %w", ins.rows, err))
		}
		switch p {
		case serverEndOfStream:
			c.used = time.Now()
			return nil
		case serverException:
			return c.fail(ctx, fmt.Errorf("insert of %d rows: %w", ins.rows, c.exception()))
		case serverProgress:
			err = c.skipProgress()
		case serverProfileInfo:
			err = c.skipProfileInfo()
		default:
			err = fmt.Errorf("packet %d: %w", p, ErrProtocol)
		}
		if err != nil {
			return c.fail(ctx, fmt.Errorf("insert of %d rows: %w", ins.rows, err))
		}
	}
}

// explain returns the server's exception instead of err when the server sent one before it
// stopped reading (a write then fails with a reset connection).
func (c *Conn) explain(err error) error {
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	if p, rerr := c.uvarint(); rerr == nil && p == serverException {
		return fmt.Errorf("%w (%w)", c.exception(), err)
	}
	return err
}

// appendData appends a Data packet of the serialized block blk: its header, then blk in
// compressed frames.
func (c *Conn) appendData(dst, blk []byte) ([]byte, error) {
	dst = binary.AppendUvarint(dst, clientData)
	dst = AppendString(dst, "") // table name: the INSERT's
	if c.cfg.NoCompression {
		return append(dst, blk...), nil
	}
	for len(blk) > 0 {
		n := min(len(blk), frameSize)
		if err := c.zw.Compress(blk[:n]); err != nil {
			return dst, fmt.Errorf("compress: %w", err)
		}
		dst = append(dst, c.zw.Data...)
		blk = blk[n:]
	}
	return dst, nil
}

// compressionFlag is the Query packet's compression field.
func compressionFlag(off bool) uint64 {
	if off {
		return 0
	}
	return 1
}

// appendBlockHeader appends a block's info (not an overflow row, no bucket) and sizes.
func appendBlockHeader(b []byte, cols, rows int) []byte {
	b = binary.AppendUvarint(b, 1) // field 1: is_overflows
	b = append(b, 0)
	b = binary.AppendUvarint(b, 2) // field 2: bucket_num
	b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	b = binary.AppendUvarint(b, 0) // end of fields
	b = binary.AppendUvarint(b, uint64(cols))
	return binary.AppendUvarint(b, uint64(rows))
}

// readHeaderBlock reads a Data packet's table name and compressed block of no rows, and
// returns its columns.
func (c *Conn) readHeaderBlock() ([]Column, error) {
	if _, err := c.str(); err != nil { // table name
		return nil, err
	}
	rd := reader{r: c.r}
	if !c.cfg.NoCompression {
		rd.r = bufio.NewReaderSize(compress.NewReader(c.r), 4<<10)
	}
	for {
		field := rd.uvarint()
		if field == 0 || rd.err != nil {
			break
		}
		switch field {
		case 1:
			rd.byte()
		case 2:
			rd.skip(4)
		default:
			return nil, fmt.Errorf("block info field %d: %w", field, ErrProtocol)
		}
	}
	ncols, nrows := rd.uvarint(), rd.uvarint()
	if rd.err != nil {
		return nil, rd.err
	}
	if nrows != 0 || ncols > 10_000 {
		return nil, fmt.Errorf("header block of %d columns and %d rows: %w", ncols, nrows, ErrProtocol)
	}
	cols := make([]Column, ncols)
	for i := range cols {
		cols[i] = Column{Name: rd.str(), Type: rd.str()}
	}
	if rd.err != nil {
		return nil, rd.err
	}
	if !c.cfg.NoCompression && rd.r.Buffered() != 0 {
		return nil, fmt.Errorf("%d bytes after the header block: %w", rd.r.Buffered(), ErrProtocol)
	}
	return cols, nil
}

// exception reads an Exception packet's body.
func (c *Conn) exception() error {
	rd := reader{r: c.r}
	var first, last *Exception
	for depth := 0; depth < 16; depth++ {
		e := &Exception{}
		var b [4]byte
		rd.read(b[:])
		e.Code = int32(binary.LittleEndian.Uint32(b[:]))
		e.Name = rd.str()
		e.Message = rd.str()
		rd.str() // stack trace
		nested := rd.byte()
		if rd.err != nil {
			return fmt.Errorf("read exception: %w", rd.err)
		}
		if first == nil {
			first = e
		} else {
			last.Nested = e
		}
		last = e
		if nested == 0 {
			break
		}
	}
	return first
}

func (c *Conn) skipProgress() error {
	rd := reader{r: c.r}
	rd.uvarint() // rows
	rd.uvarint() // bytes
	rd.uvarint() // total rows
	return rd.err
}

func (c *Conn) skipProfileInfo() error {
	rd := reader{r: c.r}
	rd.uvarint() // rows
	rd.uvarint() // blocks
	rd.uvarint() // bytes
	rd.byte()    // applied limit
	rd.uvarint() // rows before limit
	rd.byte()    // calculated rows before limit
	return rd.err
}

func (c *Conn) uvarint() (uint64, error) {
	rd := reader{r: c.r}
	v := rd.uvarint()
	return v, rd.err
}

func (c *Conn) str() (string, error) {
	rd := reader{r: c.r}
	s := rd.str()
	return s, rd.err
}

// reader reads the protocol's values; the first error sticks.
type reader struct {
	r   *bufio.Reader
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(r.r)
	if err != nil {
		r.err = err
	}
	return v
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	b, err := r.r.ReadByte()
	if err != nil {
		r.err = err
	}
	return b
}

func (r *reader) read(p []byte) {
	if r.err != nil {
		return
	}
	if _, err := io.ReadFull(r.r, p); err != nil {
		r.err = err
	}
}

func (r *reader) skip(n int) {
	if r.err != nil {
		return
	}
	if _, err := r.r.Discard(n); err != nil {
		r.err = err
	}
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > maxString {
		r.err = fmt.Errorf("string of %d bytes: %w", n, ErrProtocol)
		return ""
	}
	p := make([]byte, n)
	r.read(p)
	return string(p)
}

// AppendString appends s as the protocol writes strings: a uvarint length and the bytes, which
// is also a value of a String column.
func AppendString(b []byte, s string) []byte {
	if len(s) < 0x80 {
		b = append(b, byte(len(s)))
	} else {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	return append(b, s...)
}

var (
	hostname, _ = os.Hostname()
	osUser      = os.Getenv("USER")
)
