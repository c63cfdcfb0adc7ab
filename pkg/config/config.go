// Package config reads settings from the environment into structs that declare them in tags
// (env.go): the settings every marketpipe process shares (Config) and each service's own.
// Flags may override them; packages below main never read the environment themselves, they are
// handed a typed Config.
package config

import (
	"fmt"
	"net"
	"net/url"
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
	URL      string `env:"NATS_URL" default:"nats://127.0.0.1:4222" help:"NATS servers, comma-separated; a password or token in it is shown as xxxxx in every log, error and output"`
	Creds    string `env:"NATS_CREDS" help:"NATS: path of this program's own .creds file (marketpipe auth init: a service's, operator for the CLI, admin for migrate); a service refuses another identity's"`
	User     string `env:"NATS_USER" help:"NATS user name"`
	Password string `env:"NATS_PASSWORD" help:"NATS password"`
	CA       string `env:"NATS_CA" help:"NATS TLS: CA certificate file"`
	Cert     string `env:"NATS_CERT" help:"NATS TLS: client certificate file (with NATS_KEY)"`
	Key      string `env:"NATS_KEY" help:"NATS TLS: client key file (with NATS_CERT)"`
	// Replicas is NATS_REPLICAS: the replicas of every stream, bucket and object store the
	// pipeline declares. An existing one with more keeps its count.
	Replicas int `env:"NATS_REPLICAS" default:"1" help:"replicas of every stream, bucket and object store (1 to 5; 3 in the Kubernetes manifests). A service raises an existing stream's replicas to it, and never lowers them: one with more keeps its count (logged)"`
	// MaxBytes is NATS_MAX_BYTES: the JetStream storage the pipeline's streams, buckets and
	// object store may hold together on each server, shared out among them (pkg/natsx).
	MaxBytes int64 "env:\"NATS_MAX_BYTES,bytes\" default:\"8GiB\" shown:\"8GiB (32GiB in the Kubernetes manifests)\" help:\"what the streams, buckets and object store may hold together on each NATS server (bytes, or with KiB, MiB, GiB, TiB), shared out as the table below says; must fit the server's `max_file_store`\""
}

// ClickHouse holds the connection settings of ClickHouse.
type ClickHouse struct {
	Addr     string `env:"CLICKHOUSE_ADDR" default:"127.0.0.1:9000" help:"ClickHouse native protocol host:port"`
	Database string `env:"CLICKHOUSE_DATABASE" default:"marketpipe" help:"ClickHouse database"`
	User     string `env:"CLICKHOUSE_USER" default:"default" help:"ClickHouse user"`
	Password string `env:"CLICKHOUSE_PASSWORD" shown:"empty" help:"ClickHouse password"`
	// Compression is how INSERT blocks travel to the server: "lz4" (the default) or "none",
	// which saves both sides the CPU of LZ4 when the server is on the same host.
	// Secure is CLICKHOUSE_SECURE: the native protocol over TLS (the server's tcp_port_secure),
	// verified against the system's roots or CLICKHOUSE_CA.
	Secure string `env:"CLICKHOUSE_SECURE,lower" default:"false" oneof:"true false" help:"true: talk to ClickHouse over TLS (the server's tcp_port_secure, 9440 by default; CLICKHOUSE_ADDR must name it), verifying its certificate"`
	// Cluster is CLICKHOUSE_CLUSTER: replicated tables on that cluster of the server's
	// remote_servers (chstore.Config.Cluster).
	Cluster     string "env:\"CLICKHOUSE_CLUSTER\" help:\"replicated ClickHouse: the cluster (in the servers' remote_servers) that `migrate` creates Replicated tables on, ON CLUSTER; the loader's INSERTs then wait for 2 replicas (docs/clickhouse-replication.md)\""
	CA          string `env:"CLICKHOUSE_CA" help:"ClickHouse TLS: CA certificate file to verify the server with (default: the system's roots)"`
	Compression string "env:\"CLICKHOUSE_COMPRESSION,lower\" default:\"lz4\" oneof:\"lz4 none\" shown:\"lz4 (none under `dev` when ClickHouse is on a loopback address)\" help:\"how INSERT blocks travel: `lz4`, or `none` for a server on the same host (saves both sides LZ4's CPU, for more bytes on the wire)\""
}

// Telemetry holds the variables of traces and metrics export (pkg/telemetry).
type Telemetry struct {
	TracesExporter  string `env:"OTEL_TRACES_EXPORTER" shown:"none" help:"traces export: otlp, console or none"`
	MetricsExporter string `env:"OTEL_METRICS_EXPORTER" shown:"none" help:"metrics export: otlp, console or none (metrics are always on /metrics)"`
	Endpoint        string `env:"OTEL_EXPORTER_OTLP_ENDPOINT" help:"OTLP collector address"`
	TracesEndpoint  string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" help:"OTLP collector address for traces only"`
	Protocol        string `env:"OTEL_EXPORTER_OTLP_PROTOCOL" help:"OTLP protocol"`
	ServiceName     string `env:"OTEL_SERVICE_NAME" shown:"the service's name" help:"service name in traces and metrics"`
	MetricInterval  string `env:"OTEL_METRIC_EXPORT_INTERVAL" help:"metrics export interval, in milliseconds"`
	TraceFile       string `env:"MARKETPIPE_TRACE_FILE" shown:"stdout" help:"console traces exporter: write spans to this file"`
	MetricsFile     string `env:"MARKETPIPE_METRICS_FILE" shown:"stdout" help:"console metrics exporter: write metrics to this file"`
}

// Config is what every service and the CLI read.
type Config struct {
	NATS              NATS
	ClickHouse        ClickHouse
	VendorURL         string `env:"VENDOR_URL" default:"https://api.bloomberg.com/eap" help:"vendor REST base URL"`
	VendorCredentials string `env:"VENDOR_CREDENTIALS" help:"path of the vendor credentials JSON (per-request JWT; never sent on a redirect to another host)"`
	VendorTokenURL    string `env:"VENDOR_TOKEN_URL" help:"OAuth2 token endpoint: use client credentials instead of JWT"`
	VendorAccount     string "env:\"VENDOR_ACCOUNT\" shown:\"the scheduled account of the catalog list\" help:\"the vendor account (catalog identifier) requests go to; needed when the credentials see several scheduled accounts (`marketpipe vendor check` lists them)\""
	// VendorMaxPoints bounds one vendor request: a job asking more data points (securities ×
	// fields × dates) is split into several requests, and a backfill into parts of at most this.
	VendorMaxPoints int `env:"VENDOR_MAX_POINTS_PER_REQUEST,positive" default:"1000000" help:"the most data points (securities × fields × dates) one vendor request asks for: a larger job becomes several requests"`
	// VendorRateLimit paces this process's vendor calls (VendorCallsPerMinute).
	VendorRateLimit int "env:\"VENDOR_RATE_LIMIT\" shown:\"1200 (none for a simulator on this host)\" help:\"the most vendor calls a minute this process makes, retries included; HAPI allows 1,200 a minute per application, so divide it among the processes that call the vendor\""
	// VendorNotifications is how the poller learns that outputs are ready.
	VendorNotifications string `env:"VENDOR_NOTIFICATIONS,lower" default:"poll" oneof:"poll sse" help:"poll: ask the vendor every POLL_INTERVAL; sse: listen to the vendor's notification stream and poll only as a fallback"`
	// VendorSimulator is set by dev when VENDOR_URL is its embedded simulator, which needs no
	// credentials wherever it listens.
	VendorSimulator bool   `env:"-"`
	HTTPAddr        string "env:\"HTTP_ADDR\" default:\":8080\" shown:\":8080 (per service; 127.0.0.1:8080 under `dev`)\" help:\"/healthz, /readyz and Prometheus /metrics\""
	LogLevel        string `env:"LOG_LEVEL,lower" default:"info" oneof:"debug info warn error" help:"slog level: debug, info, warn or error"`
	LogFormat       string `env:"LOG_FORMAT,lower" default:"json" oneof:"json text" help:"json or text"`
	Telemetry       Telemetry
	// OTEL holds the Telemetry variables that are set, by name, for the telemetry package.
	OTEL map[string]string `env:"-"`
}

// Defaults that other packages build on; TestDefaults checks they are the tags' defaults.
const (
	DefaultNATSURL  = "nats://127.0.0.1:4222"
	DefaultHTTPAddr = ":8080"
	// DefaultNATSMaxBytes fits the JetStream budget (max_file_store) of deploy/nats/nats.conf
	// and of a server on a machine with a few tens of GB of free disk.
	DefaultNATSMaxBytes = 8 << 30
	// MaxNATSReplicas is JetStream's own limit on the replicas of a stream.
	MaxNATSReplicas = 5
)

// Load reads the configuration through lookup.
func Load(lookup Lookup) (Config, error) {
	var c Config
	if err := Read(lookup, &c); err != nil {
		return c, err
	}
	c.OTEL = map[string]string{}
	for _, v := range Vars(Telemetry{}) {
		if s, ok := lookup(v.Name); ok {
			c.OTEL[v.Name] = s
		}
	}
	return c, c.Validate()
}

// Validate reports settings that cannot work, naming the variable.
func (c Config) Validate() error {
	// LOG_FORMAT, LOG_LEVEL and CLICKHOUSE_COMPRESSION, which flags may have set after Load.
	if err := CheckChoices(c); err != nil {
		return err
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

// CheckVendorCredentials refuses a vendor that is not the simulator without credentials: the
// stages that call the vendor, and dev, check it before they start. VENDOR_URL counts as the
// simulator when it is dev's embedded one, or on this host (localhost or a loopback address,
// where a simulator listens in tests and local runs); anything else is a real vendor, which
// needs VENDOR_CREDENTIALS.
func (c Config) CheckVendorCredentials() error {
	if c.VendorCredentials != "" || c.VendorOnThisHost() {
		return nil
	}
	return fmt.Errorf("VENDOR_URL=%s is not the simulator and VENDOR_CREDENTIALS is not set: set "+
		"VENDOR_CREDENTIALS to the path of the vendor's credentials JSON (docs/going-live.md), or unset "+
		"VENDOR_URL under dev to use the simulator", RedactURL(c.VendorURL))
}

// VendorOnThisHost reports whether the vendor is a simulator: dev's embedded one, or one on
// this host (localhost or a loopback address).
func (c Config) VendorOnThisHost() bool { return c.VendorSimulator || onThisHost(c.VendorURL) }

// onThisHost reports whether rawURL's host is localhost or a loopback address.
func onThisHost(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
