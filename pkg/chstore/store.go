// Package chstore is marketpipe's ClickHouse store: the schema, the loader's idempotent
// columnar inserts of observations and rejects, the jobs table the stages record into, and the
// reads behind `marketpipe status` and the tests.
//
// It speaks only the native protocol and only what works both on Debian's ClickHouse 18.16
// (the development and test server) and on current ClickHouse (production). INSERTs go two
// ways, each needed: observations, nearly all the rows, through pkg/chinsert, which serializes
// blocks straight from the columns at a third of the driver's client CPU; everything else (the
// rejects, jobs, commits and migrations: few rows) through clickhouse-go v2's prepared batches,
// as do the observations under Config.DriverInserts, the way back for a server chinsert cannot
// talk to. Prepared batches name their columns (an INSERT without a column list gives 18.16 a
// batch of no columns, and Exec of INSERT ... VALUES hangs); no string-valued settings (the
// client fails on them against 18.16), no LowCardinality, no DateTime64, no HTTP.
//
// Idempotence and atomicity come from the tables: observations keeps every run's rows, keyed by
// (security, field, date, program, snapshot_at, version), so a redelivered batch adds rows that
// collapse into the same ones and no merge touches another run's; a run is visible once its row
// is in commits, and readers read observations_current (Query), one row per key from the
// latest committed run, without FINAL.
package chstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/marketpipe/marketpipe/pkg/chinsert"
)

// Defaults for Config's zero values.
const (
	DefaultAddr         = "127.0.0.1:9000"
	DefaultDatabase     = "marketpipe"
	DefaultUser         = "default"
	DefaultDialTimeout  = 5 * time.Second
	DefaultMaxOpenConns = 8
	// DefaultReadTimeout bounds a wait for the server's next packet, so that a server that
	// accepted the connection and then stopped answering cannot hang a stage forever.
	DefaultReadTimeout = 2 * time.Minute
)

// Config says where the store is. Zero values take the defaults above.
type Config struct {
	Addr     string // host:port of the native protocol
	Database string // created by Migrate
	User     string
	Password string
	// DialTimeout bounds each connection attempt, so a server that is down gives an error
	// quickly instead of a hang.
	DialTimeout  time.Duration
	MaxOpenConns int
	// NoCompression sends blocks uncompressed, through pkg/chinsert and clickhouse-go alike
	// (CLICKHOUSE_COMPRESSION=none). By default they are LZ4-compressed: that saves network
	// when the server is remote, at some CPU on both sides.
	NoCompression bool
	// DriverInserts writes observations through clickhouse-go's batches instead of
	// pkg/chinsert's blocks (the default), which serializes each block's columns straight
	// from the rows and cost the loader about half the CPU per row (BenchmarkInsert). It is
	// there for a server that chinsert cannot talk to.
	DriverInserts bool
	// TLS, when set, is the native protocol's TLS (CLICKHOUSE_SECURE, TLSConfig).
	TLS *tls.Config
	// Cluster (CLICKHOUSE_CLUSTER), when set, names the cluster of the server's remote_servers
	// whose every server holds the tables: Migrate creates them ON CLUSTER as
	// Replicated*MergeTree, and the loader's INSERTs of observations, rejects and commits wait
	// until InsertQuorum replicas have them (docs/clickhouse-replication.md).
	Cluster string
	// QuorumTimeout bounds how long such an INSERT waits for its quorum (insert_quorum_timeout;
	// 0 means DefaultQuorumTimeout). On timeout the rows may be written or not: the INSERT
	// fails and is retried, which the tables make harmless.
	QuorumTimeout time.Duration
}

// InsertQuorum is how many replicas must have written an INSERT of observations, rejects or
// commits before the server acknowledges it, under Config.Cluster: the loader acknowledges a
// batch only then, so the loss of one replica loses nothing acknowledged. A shard therefore
// needs two replicas up to load.
const InsertQuorum = 2

// DefaultQuorumTimeout is Config.QuorumTimeout's default (the server's is 10 minutes).
const DefaultQuorumTimeout = time.Minute

// TLSConfig is the TLS of CLICKHOUSE_SECURE=true: the server's certificate verified against
// caFile's certificates, or the system's roots when caFile is empty. Nil when secure is false.
func TLSConfig(secure bool, caFile string) (*tls.Config, error) {
	if !secure {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CLICKHOUSE_CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CLICKHOUSE_CA %s: no PEM certificate in it", caFile)
		}
	}
	return c, nil
}

// String describes the config without the password, for logs.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = " password=<redacted>"
	}
	return fmt.Sprintf("clickhouse://%s@%s/%s%s", c.User, c.Addr, c.Database, pw)
}

// ErrInvalidDatabase is returned by Open for a database name that is not a plain identifier;
// the name is written into SQL, so it is checked rather than escaped.
var ErrInvalidDatabase = errors.New("invalid database name: want letters, digits and _, not starting with a digit")

// ErrInvalidCluster is returned by Open for a cluster name that is not a plain identifier.
var ErrInvalidCluster = errors.New("invalid cluster name: want letters, digits and _, not starting with a digit")

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Store is a connection pool to ClickHouse and the queries marketpipe runs there. It is safe
// for concurrent use.
type Store struct {
	cfg     Config
	conn    driver.Conn
	blocks  *chinsert.Pool // connections for observation INSERTs
	db      string         // quoted database name, for SQL
	version Version
	// quorum serializes a table's quorum INSERTs (Config.Cluster) on servers older than 20.10,
	// which refuse a quorum INSERT into a table while the previous one waits for its quorum
	// (UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE); nil otherwise.
	quorum map[string]*sync.Mutex
}

// Open connects to ClickHouse and pings it. The database need not exist yet (Migrate creates
// it): every query names its tables in full rather than relying on a connection default.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Database == "" {
		cfg.Database = DefaultDatabase
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxOpenConns <= 0 {
		cfg.MaxOpenConns = DefaultMaxOpenConns
	}
	if cfg.QuorumTimeout <= 0 {
		cfg.QuorumTimeout = DefaultQuorumTimeout
	}
	if !identifier.MatchString(cfg.Database) {
		return nil, fmt.Errorf("open clickhouse %s: %q: %w", cfg.Addr, cfg.Database, ErrInvalidDatabase)
	}
	if cfg.Cluster != "" && !identifier.MatchString(cfg.Cluster) {
		return nil, fmt.Errorf("open clickhouse %s: cluster %q: %w", cfg.Addr, cfg.Cluster, ErrInvalidCluster)
	}
	var blockSettings []chinsert.Setting
	if cfg.Cluster != "" {
		blockSettings = []chinsert.Setting{{Name: "insert_quorum", Value: InsertQuorum},
			{Name: "insert_quorum_timeout", Value: uint64(cfg.QuorumTimeout.Milliseconds())}}
	}
	opts := &clickhouse.Options{
		Protocol:     clickhouse.Native,
		Addr:         []string{cfg.Addr},
		Auth:         clickhouse.Auth{Username: cfg.User, Password: cfg.Password},
		TLS:          cfg.TLS,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  DefaultReadTimeout,
		MaxOpenConns: cfg.MaxOpenConns,
		MaxIdleConns: cfg.MaxOpenConns,
		// A connection keeps the buffers its largest query needed (for an INSERT block of
		// blockRows rows, about 30 MB to encode and compress it). Idle connections holding
		// them made most of the loader's heap; dropped after each query, an INSERT regrows
		// them once and reuses them for its following blocks.
		FreeBufOnConnRelease: true,
		ClientInfo: clickhouse.ClientInfo{
			Products: []struct{ Name, Version string }{{Name: "marketpipe", Version: "1"}},
		},
	}
	if !cfg.NoCompression {
		opts.Compression = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", cfg.Addr, err)
	}
	s := &Store{cfg: cfg, conn: conn, db: "`" + cfg.Database + "`",
		blocks: chinsert.NewPool(chinsert.Config{Addr: cfg.Addr, Database: cfg.Database, User: cfg.User,
			Password: cfg.Password, DialTimeout: cfg.DialTimeout, ReadTimeout: DefaultReadTimeout, NoCompression: cfg.NoCompression,
			TLS: cfg.TLS, Settings: blockSettings}, cfg.MaxOpenConns)}
	if err := s.Ping(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("open clickhouse %s: server version: %w", cfg.Addr, err)
	}
	s.version = Version{Major: sv.Version.Major, Minor: sv.Version.Minor, Patch: sv.Version.Patch}
	if cfg.Cluster != "" && !s.version.AtLeast(20, 10) {
		s.quorum = map[string]*sync.Mutex{"observations": {}, "rejects": {}, "commits": {}}
	}
	return s, nil
}

// quorumInsert prepares an INSERT into table: under Config.Cluster, ctx carries the quorum
// settings for clickhouse-go, and the table's lock is taken where the server needs it (see
// Store.quorum); call the returned function when the INSERT has ended.
func (s *Store) quorumInsert(ctx context.Context, table string) (context.Context, func()) {
	if s.cfg.Cluster == "" {
		return ctx, func() {}
	}
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_quorum": InsertQuorum, "insert_quorum_timeout": int(s.cfg.QuorumTimeout.Milliseconds())}))
	mu := s.quorum[table]
	if mu == nil {
		return ctx, func() {}
	}
	mu.Lock()
	return ctx, mu.Unlock
}

// Close closes the connections.
func (s *Store) Close() error {
	s.blocks.Close()
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("close clickhouse %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Ping checks that the server answers, within the dial timeout when ctx has no earlier
// deadline: readiness probes call it.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout+time.Second)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping clickhouse %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Database returns the database the store uses.
func (s *Store) Database() string { return s.cfg.Database }

// ServerVersion returns the server's version as major.minor.patch, e.g. "18.16.1".
func (s *Store) ServerVersion() string { return s.version.String() }

// Version is a ClickHouse server version, for detecting optional features.
type Version struct{ Major, Minor, Patch uint64 }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor uint64) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// table returns the quoted, database-qualified name of a table.
func (s *Store) table(name string) string { return s.db + ".`" + name + "`" }

// Exception codes the store reacts to.
const (
	codeUnknownTable          = 60
	codeTableAlreadyExists    = 57
	codeDatabaseAlreadyExists = 82
	codeUnknownDatabase       = 81
	codeDuplicateColumn       = 15
)

// IsMissingDatabase reports whether err says the database or a table of it does not exist
// (yet): what reading a database before its first migration gives.
func IsMissingDatabase(err error) bool {
	return isException(err, codeUnknownDatabase, codeUnknownTable)
}

// isException reports whether err is a server exception with one of the codes.
func isException(err error, codes ...int32) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	for _, c := range codes {
		if ex.Code == c {
			return true
		}
	}
	return false
}
