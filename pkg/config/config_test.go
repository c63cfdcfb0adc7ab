package config

import (
	"strings"
	"testing"
	"time"
)

func lookupOf(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPositiveInt(t *testing.T) {
	env := lookupOf(map[string]string{"N": "12", "EMPTY": "", "ZERO": "0", "NEG": "-3", "WORD": "many"})
	for key, want := range map[string]int{"N": 12, "EMPTY": 7, "UNSET": 7} {
		if n, err := PositiveInt(env, key, 7); err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", key, n, err, want)
		}
	}
	for _, key := range []string{"ZERO", "NEG", "WORD"} {
		if _, err := PositiveInt(env, key, 7); err == nil || !strings.Contains(err.Error(), key+"=") {
			t.Errorf("%s: error %v does not name the variable", key, err)
		}
	}
}

func TestDuration(t *testing.T) {
	env := lookupOf(map[string]string{"D": "150ms", "BAD": "soon"})
	if d, err := Duration(env, "D", time.Second); err != nil || d != 150*time.Millisecond {
		t.Errorf("D: %v, %v", d, err)
	}
	if d, err := Duration(env, "UNSET", time.Second); err != nil || d != time.Second {
		t.Errorf("UNSET: %v, %v", d, err)
	}
	if _, err := Duration(env, "BAD", time.Second); err == nil || !strings.Contains(err.Error(), "BAD=") {
		t.Errorf("BAD: %v", err)
	}
}

func TestClickHouseCompression(t *testing.T) {
	for v, want := range map[string]string{"": "lz4", "lz4": "lz4", "NONE": "none"} {
		c, err := Load(lookupOf(map[string]string{"CLICKHOUSE_COMPRESSION": v}))
		if err != nil || c.ClickHouse.Compression != want {
			t.Errorf("CLICKHOUSE_COMPRESSION=%q: %q, %v; want %q", v, c.ClickHouse.Compression, err, want)
		}
	}
	if _, err := Load(lookupOf(map[string]string{"CLICKHOUSE_COMPRESSION": "zstd"})); err == nil ||
		!strings.Contains(err.Error(), `CLICKHOUSE_COMPRESSION="zstd"`) {
		t.Errorf("CLICKHOUSE_COMPRESSION=zstd: error %v does not name the variable and value", err)
	}
}

func TestPositiveDuration(t *testing.T) {
	env := lookupOf(map[string]string{"D": "2s", "ZERO": "0s", "NEG": "-1s", "BAD": "soon"})
	if d, err := PositiveDuration(env, "D", time.Second); err != nil || d != 2*time.Second {
		t.Errorf("D: %v, %v", d, err)
	}
	if d, err := PositiveDuration(env, "UNSET", time.Second); err != nil || d != time.Second {
		t.Errorf("UNSET: %v, %v", d, err)
	}
	for _, key := range []string{"ZERO", "NEG", "BAD"} {
		if _, err := PositiveDuration(env, key, time.Second); err == nil || !strings.Contains(err.Error(), key+"=") {
			t.Errorf("%s: error %v does not name the variable", key, err)
		}
	}
}

func TestNATSReplicasAndMaxBytes(t *testing.T) {
	c, err := Load(lookupOf(nil))
	if err != nil || c.NATS.Replicas != 1 || c.NATS.MaxBytes != DefaultNATSMaxBytes {
		t.Fatalf("defaults: replicas %d, max bytes %d, %v", c.NATS.Replicas, c.NATS.MaxBytes, err)
	}
	c, err = Load(lookupOf(map[string]string{"NATS_REPLICAS": "3", "NATS_MAX_BYTES": "2GiB"}))
	if err != nil || c.NATS.Replicas != 3 || c.NATS.MaxBytes != 2<<30 {
		t.Fatalf("NATS_REPLICAS=3 NATS_MAX_BYTES=2GiB: %d, %d, %v", c.NATS.Replicas, c.NATS.MaxBytes, err)
	}
	for k, v := range map[string]string{"NATS_REPLICAS": "0", "NATS_MAX_BYTES": "lots"} {
		if _, err := Load(lookupOf(map[string]string{k: v})); err == nil || !strings.Contains(err.Error(), k+"=") {
			t.Errorf("%s=%s: error %v does not name the variable", k, v, err)
		}
	}
	for _, v := range []string{"7", "1048576"} {
		if _, err := Load(lookupOf(map[string]string{"NATS_REPLICAS": v, "NATS_MAX_BYTES": v})); err == nil {
			t.Errorf("NATS_REPLICAS=%s NATS_MAX_BYTES=%s accepted", v, v)
		}
	}
}

func TestBytes(t *testing.T) {
	env := lookupOf(map[string]string{"A": "1024", "B": "64MiB", "C": "3 GiB", "D": "1KiB", "E": "-1", "F": "2GB", "G": "16EiB"})
	for key, want := range map[string]int64{"A": 1024, "B": 64 << 20, "C": 3 << 30, "D": 1024, "UNSET": 5} {
		if n, err := Bytes(env, key, 5); err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", key, n, err, want)
		}
	}
	for _, key := range []string{"E", "F", "G"} {
		if _, err := Bytes(env, key, 5); err == nil || !strings.Contains(err.Error(), key+"=") {
			t.Errorf("%s: error %v does not name the variable", key, err)
		}
	}
}

// TestDefaults checks that the constants other packages use are the defaults Load applies.
func TestDefaults(t *testing.T) {
	c, err := Load(lookupOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != DefaultNATSURL || c.HTTPAddr != DefaultHTTPAddr || c.NATS.MaxBytes != DefaultNATSMaxBytes {
		t.Errorf("defaults %q %q %d; the constants say %q %q %d", c.NATS.URL, c.HTTPAddr, c.NATS.MaxBytes,
			DefaultNATSURL, DefaultHTTPAddr, DefaultNATSMaxBytes)
	}
	if c.ClickHouse.Addr != "127.0.0.1:9000" || c.ClickHouse.Database != "marketpipe" || c.ClickHouse.User != "default" ||
		c.LogLevel != "info" || c.LogFormat != "json" || c.NATS.Replicas != 1 {
		t.Errorf("defaults: %+v", c)
	}
}

// TestReadSettings checks Read on a settings struct: defaults, each kind's parsing, and errors
// that name the variable.
func TestReadSettings(t *testing.T) {
	type settings struct {
		D    time.Duration `env:"D,positive" default:"30s"`
		Z    time.Duration `env:"Z"`
		N    int           `env:"N" default:"2"`
		B    int64         `env:"B,bytes" default:"1KiB"`
		S    string        `env:"S,lower" default:"a" oneof:"a bb ccc"`
		Deep struct {
			X string `env:"X" help:"x"`
		}
	}
	var s settings
	if err := Read(lookupOf(nil), &s); err != nil || s.D != 30*time.Second || s.Z != 0 || s.N != 2 || s.B != 1024 || s.S != "a" {
		t.Fatalf("defaults: %+v, %v", s, err)
	}
	if err := Read(lookupOf(map[string]string{"D": "1m", "N": "5", "B": "2MiB", "S": "CCC", "X": "y"}), &s); err != nil ||
		s.D != time.Minute || s.N != 5 || s.B != 2<<20 || s.S != "ccc" || s.Deep.X != "y" {
		t.Fatalf("set: %+v, %v", s, err)
	}
	for k, want := range map[string]string{"D": `D="0": want a positive duration`, "N": `N="0": want a positive integer`,
		"B": `B="0": want a positive number of bytes`, "S": `S="0": want a, bb or ccc`} {
		if err := Read(lookupOf(map[string]string{k: "0"}), &s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=0: error %v, want %q", k, err, want)
		}
	}
	names := []string{}
	for _, v := range Vars(settings{}) {
		names = append(names, v.Name)
	}
	if strings.Join(names, " ") != "D Z N B S X" {
		t.Errorf("Vars: %v", names)
	}
}

// TestValidateChoices: Validate refuses a value a flag set outside its variable's choices,
// naming the variable.
func TestValidateChoices(t *testing.T) {
	c, err := Load(lookupOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	c.LogFormat = "xml"
	if err := c.Validate(); err == nil || err.Error() != `LOG_FORMAT="xml": want json or text` {
		t.Errorf("LOG_FORMAT=xml: %v", err)
	}
	c.LogFormat, c.LogLevel = "text", "loud"
	if err := c.Validate(); err == nil || err.Error() != `LOG_LEVEL="loud": want debug, info, warn or error` {
		t.Errorf("LOG_LEVEL=loud: %v", err)
	}
}

func TestCheckVendorCredentials(t *testing.T) {
	for _, tt := range []struct {
		url, creds string
		sim        bool
		ok         bool
	}{
		{"https://api.bloomberg.com/eap", "", false, false},
		{"https://api.bloomberg.com/eap", "/run/secrets/vendor.json", false, true},
		{"http://vendorsim:8081/eap", "", false, false}, // a simulator elsewhere is given credentials
		{"http://127.0.0.1:8081/eap", "", false, true},
		{"http://localhost:8081/eap", "", false, true},
		{"http://[::1]:8081/eap", "", false, true},
		{"http://192.168.1.5:40000/eap", "", true, true}, // dev's embedded simulator on --listen
		{"http://192.168.1.5:40000/eap", "", false, false},
		{"http://user:s3cret@vendor.example.com/eap", "", false, false},
		{"::not a url", "", false, false},
	} {
		c := Config{VendorURL: tt.url, VendorCredentials: tt.creds, VendorSimulator: tt.sim}
		err := c.CheckVendorCredentials()
		if (err == nil) != tt.ok {
			t.Errorf("%s creds %q sim %v: err = %v, want ok %v", tt.url, tt.creds, tt.sim, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "set VENDOR_CREDENTIALS") || strings.Contains(err.Error(), "s3cret")) {
			t.Errorf("%s: error %q does not say what to set, or shows a secret", tt.url, err)
		}
	}
}
