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
