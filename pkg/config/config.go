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
