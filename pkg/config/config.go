// Package config reads the settings every marketpipe process shares from the environment
// (DESIGN.md, "Configuration"). Flags may override them; packages below main never read the
// environment themselves, they are handed a typed Config.
package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Lookup returns the value of an environment variable; tests pass their own.
type Lookup func(key string) (string, bool)

// OS is the process environment.
var OS Lookup = os.LookupEnv

// NATS holds the connection settings of the NATS servers.
type NATS struct {
	URL      string
	Creds    string // path of a .creds file
	User     string
	Password string
	CA       string
	Cert     string
	Key      string
	// Replicas is NATS_REPLICAS: the replicas of every stream, bucket and object store the
	// pipeline declares. An existing one with more keeps its count.
	Replicas int
	// MaxBytes is NATS_MAX_BYTES: the JetStream storage the pipeline's streams, buckets and
	// object store may hold together on each server, shared out among them (pkg/natsx).
	MaxBytes int64
}

// ClickHouse holds the connection settings of ClickHouse.
type ClickHouse struct {
	Addr     string
	Database string
	User     string
	Password string
	// Compression is how INSERT blocks travel to the server: "lz4" (the default) or "none",
	// which saves both sides the CPU of LZ4 when the server is on the same host.
	Compression string
}

// Config is what every service and the CLI read.
type Config struct {
	NATS              NATS
	ClickHouse        ClickHouse
	VendorURL         string
	VendorCredentials string
	HTTPAddr          string
	LogLevel          string
	LogFormat         string
	// OTEL holds the OTEL_* variables as found, for the telemetry package.
	OTEL map[string]string
}

// Defaults.
const (
	DefaultNATSURL    = "nats://127.0.0.1:4222"
	DefaultClickHouse = "127.0.0.1:9000"
	DefaultDatabase   = "marketpipe"
	DefaultVendorURL  = "https://api.bloomberg.com/eap"
	DefaultHTTPAddr   = ":8080"
	// DefaultNATSMaxBytes fits the JetStream budget (max_file_store) of deploy/nats/nats.conf
	// and of a server on a machine with a few tens of GB of free disk.
	DefaultNATSMaxBytes = 8 << 30
	// MaxNATSReplicas is JetStream's own limit on the replicas of a stream.
	MaxNATSReplicas = 5
)

// Load reads the configuration through lookup.
func Load(lookup Lookup) (Config, error) {
	get := func(key, def string) string {
		if v, ok := lookup(key); ok && v != "" {
			return v
		}
		return def
	}
	c := Config{
		NATS: NATS{
			URL: get("NATS_URL", DefaultNATSURL), Creds: get("NATS_CREDS", ""),
			User: get("NATS_USER", ""), Password: get("NATS_PASSWORD", ""),
			CA: get("NATS_CA", ""), Cert: get("NATS_CERT", ""), Key: get("NATS_KEY", ""),
		},
		ClickHouse: ClickHouse{
			Addr: get("CLICKHOUSE_ADDR", DefaultClickHouse), Database: get("CLICKHOUSE_DATABASE", DefaultDatabase),
			User: get("CLICKHOUSE_USER", "default"), Password: get("CLICKHOUSE_PASSWORD", ""),
			Compression: strings.ToLower(get("CLICKHOUSE_COMPRESSION", "lz4")),
		},
		VendorURL:         get("VENDOR_URL", DefaultVendorURL),
		VendorCredentials: get("VENDOR_CREDENTIALS", ""),
		HTTPAddr:          get("HTTP_ADDR", DefaultHTTPAddr),
		LogLevel:          strings.ToLower(get("LOG_LEVEL", "info")),
		LogFormat:         strings.ToLower(get("LOG_FORMAT", "json")),
		OTEL:              map[string]string{},
	}
	var err error
	if c.NATS.Replicas, err = PositiveInt(lookup, "NATS_REPLICAS", 1); err != nil {
		return c, err
	}
	if c.NATS.MaxBytes, err = Bytes(lookup, "NATS_MAX_BYTES", DefaultNATSMaxBytes); err != nil {
		return c, err
	}
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"MARKETPIPE_TRACE_FILE", "OTEL_METRIC_EXPORT_INTERVAL", "MARKETPIPE_METRICS_FILE"} {
		if v, ok := lookup(k); ok {
			c.OTEL[k] = v
		}
	}
	return c, c.Validate()
}

// Validate reports settings that cannot work, naming the variable.
func (c Config) Validate() error {
	switch c.LogFormat {
	case "json", "text":
	default:
		return fmt.Errorf("LOG_FORMAT=%q: want json or text", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.ClickHouse.Compression {
	case "lz4", "none":
	default:
		return fmt.Errorf("CLICKHOUSE_COMPRESSION=%q: want lz4 or none", c.ClickHouse.Compression)
	}
	if (c.NATS.Cert == "") != (c.NATS.Key == "") {
		return fmt.Errorf("NATS_CERT and NATS_KEY must be set together")
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > MaxNATSReplicas {
		return fmt.Errorf("NATS_REPLICAS=%d: want 1 to %d", c.NATS.Replicas, MaxNATSReplicas)
	}
	if c.NATS.MaxBytes < MinNATSMaxBytes {
		return fmt.Errorf("NATS_MAX_BYTES=%d: want at least %d (64MiB)", c.NATS.MaxBytes, MinNATSMaxBytes)
	}
	if c.NATS.User != "" && c.NATS.Creds != "" {
		return fmt.Errorf("NATS_USER and NATS_CREDS are exclusive")
	}
	return nil
}

// Duration reads a Go duration variable, for service-specific settings.
func Duration(lookup Lookup, key string, def time.Duration) (time.Duration, error) {
	v, ok := lookup(key)
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", key, v, err)
	}
	return d, nil
}

// PositiveDuration reads a Go duration variable that must be above zero.
func PositiveDuration(lookup Lookup, key string, def time.Duration) (time.Duration, error) {
	d, err := Duration(lookup, key, def)
	if err == nil && d <= 0 {
		v, _ := lookup(key)
		err = fmt.Errorf("%s=%q: want a positive duration, such as 30s", key, v)
	}
	return d, err
}

// PositiveInt reads a positive integer variable, for service-specific settings.
func PositiveInt(lookup Lookup, key string, def int) (int, error) {
	v, ok := lookup(key)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", key, v)
	}
	return n, nil
}

// MinNATSMaxBytes is the smallest NATS_MAX_BYTES: every stream's share must hold a few of its
// largest messages.
const MinNATSMaxBytes = 64 << 20

// byteUnits are the suffixes Bytes accepts, binary as Kubernetes quantities are.
var byteUnits = []struct {
	suffix string
	n      int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}}

// Bytes reads a size variable: a number of bytes, optionally with the suffix KiB, MiB, GiB or
// TiB ("8GiB").
func Bytes(lookup Lookup, key string, def int64) (int64, error) {
	v, ok := lookup(key)
	if !ok || v == "" {
		return def, nil
	}
	num, mult := strings.TrimSpace(v), int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%s=%q: want a positive number of bytes, optionally with KiB, MiB, GiB or TiB", key, v)
	}
	return n * mult, nil
}
