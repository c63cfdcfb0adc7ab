package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
)

const parseReply = `START-OF-FILE
RUNDATE=20240716
PROGRAMNAME=getdata
DATEFORMAT=yyyymmdd
START-OF-FIELDS
PX_LAST
NAME
CHAIN
END-OF-FIELDS
TIMESTARTED=Tue Jul 16 09:00:00 EDT 2024
START-OF-DATA
IBM US Equity |0|3|105.230000|S&P "500", Inc|;2;1;2;5;20240101;3;.5;|
broken line
BAD Equity|10|3||||
X|0|3|.0000001|N.A.| |
END-OF-DATA
END-OF-FILE
`

// runParseCmd runs `parse args...` with stdin in and returns stdout, stderr and the error.
func runParseCmd(t *testing.T, in []byte, args ...string) (string, string, error) {
	t.Helper()
	cmd := newParseCmd()
	var out, errOut bytes.Buffer
	cmd.SetIn(bytes.NewReader(in))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestParseCmd(t *testing.T) {
	const jsonl = `{"security":"IBM US Equity","field":"PX_LAST","date":"2024-07-16","value":105.23,"flag":"","program":"getdata"}
{"security":"IBM US Equity","field":"NAME","date":"2024-07-16","value":"S&P \"500\", Inc","flag":"","program":"getdata"}
{"security":"IBM US Equity","field":"CHAIN","date":"2024-07-16","value":[["2024-01-01",0.5]],"flag":"","program":"getdata"}
{"security":"BAD Equity","field":"","date":"2024-07-16","value":null,"flag":"RC=10","program":"getdata"}
{"security":"X","field":"PX_LAST","date":"2024-07-16","value":1e-7,"flag":"","program":"getdata"}
{"security":"X","field":"NAME","date":"2024-07-16","value":null,"flag":"N.A.","program":"getdata"}
{"security":"X","field":"CHAIN","date":"2024-07-16","value":null,"flag":"BLANK","program":"getdata"}
`
	const csvOut = `security,field,date,value,flag,program
IBM US Equity,PX_LAST,2024-07-16,105.23,,getdata
IBM US Equity,NAME,2024-07-16,"S&P ""500"", Inc",,getdata
IBM US Equity,CHAIN,2024-07-16,"[[""2024-01-01"",0.5]]",,getdata
BAD Equity,,2024-07-16,,RC=10,getdata
X,PX_LAST,2024-07-16,1e-7,,getdata
X,NAME,2024-07-16,,N.A.,getdata
X,CHAIN,2024-07-16,,BLANK,getdata
`
	plain := writeTemp(t, "reply.out", []byte(parseReply))
	gz := writeTemp(t, "reply.out.anyname", gzipped([]byte(parseReply)))
	tests := []struct {
		name  string
		stdin []byte
		args  []string
		out   string
	}{
		{"jsonl by default", nil, []string{plain}, jsonl},
		{"csv", nil, []string{plain, "--format", "csv"}, csvOut},
		{"gzip detected by content", nil, []string{gz, "--format=jsonl"}, jsonl},
		{"stdin", []byte(parseReply), []string{"-"}, jsonl},
		{"gzip on stdin", gzipped([]byte(parseReply)), []string{"-", "--format", "csv"}, csvOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runParseCmd(t, tt.stdin, tt.args...)
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if out != tt.out {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.out)
			}
			if !strings.HasPrefix(errOut, "line 13: row has 1 columns") || !strings.HasSuffix(errOut, ": 1 line(s) rejected\n") {
				t.Errorf("stderr = %q, want the reject of line 13 and a count", errOut)
			}
		})
	}
}

func TestParseCmdJSONLIsJSON(t *testing.T) {
	p := filepath.Join("..", "..", "pkg", "dlformat", "testdata", "bloomberg-dl", "bbdl", "fprp00.out")
	out, errOut, err := runParseCmd(t, nil, p)
	if err != nil {
		t.Fatal(err)
	}
	if errOut != "" {
		t.Errorf("stderr = %q", errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 505 {
		t.Errorf("%d lines, want 505", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || len(m) != 6 {
			t.Fatalf("line %q: %v", l, err)
		}
	}
}

func TestParseCmdErrors(t *testing.T) {
	truncated := writeTemp(t, "cut.out", []byte(parseReply[:strings.Index(parseReply, "END-OF-DATA")]))
	tests := []struct {
		name    string
		args    []string
		wantErr string
		out     string
		errOut  string
	}{
		{"unknown format", []string{truncated, "--format", "xml"}, `--format "xml"`, "", ""},
		{"missing file", []string{filepath.Join(t.TempDir(), "nope")}, "no such file", "", ""},
		{"no argument", nil, "accepts 1 arg", "", ""},
		{
			name:    "truncated file: what was read is printed, then the error",
			args:    []string{truncated, "--format", "csv"},
			wantErr: "line 15: input ends inside the data section (no END-OF-DATA): file truncated; the output is incomplete: it stops after 7 observation(s)",
			out:     "security,field,date,value,flag,program\n", errOut: "line 13: row has 1 columns",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runParseCmd(t, nil, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(out, tt.out) {
				t.Errorf("stdout = %q, want prefix %q", out, tt.out)
			}
			if tt.name == "truncated file: what was read is printed, then the error" {
				var e *dlformat.Error
				if !errors.As(err, &e) {
					t.Errorf("err %T does not wrap *dlformat.Error", err)
				}
				if strings.Count(out, "\n") != 1+7 {
					t.Errorf("stdout has %d lines, want header + 7 observations:\n%s", strings.Count(out, "\n"), out)
				}
			}
			if !strings.HasPrefix(errOut, tt.errOut) {
				t.Errorf("stderr = %q, want prefix %q", errOut, tt.errOut)
			}
		})
	}
}

func TestParseCmdTruncatedOrEmpty(t *testing.T) {
	// A reply file large enough that its gzip stream cut in the middle still decompresses
	// into some whole observations before it ends.
	var big strings.Builder
	big.WriteString(parseReply[:strings.Index(parseReply, "START-OF-DATA")] + "START-OF-DATA\n")
	for i := range 2000 {
		fmt.Fprintf(&big, "SEC%d US Equity|0|3|%d.5|Name %d|;2;1;2;5;20240101;3;.5;|\n", i, i, i)
	}
	big.WriteString("END-OF-DATA\nEND-OF-FILE\n")
	gz := gzipped([]byte(big.String()))
	cut := gz[:len(gz)/2]
	tests := []struct {
		name    string
		file    []byte
		args    []string
		wantErr []string // parts of the error, in order
		lines   int      // -1: at least one
	}{
		{"gzip cut in the middle", cut, nil, []string{"gzip stream truncated: the file ends after " +
			strconv.Itoa(len(cut)) + " bytes, inside line ", " of its decompressed text; the output is incomplete: it stops after "}, -1},
		{"gzip cut in its header", gz[:5], nil, []string{"gzip stream truncated: the file ends after 5 bytes, before its first line"}, 0},
		{"gzip cut in its trailer", gz[:len(gz)-4], []string{"--format", "csv"}, []string{"gzip stream truncated", "stops after 6000 observation(s)"}, 6001},
		{"empty file", nil, nil, []string{": empty file"}, 0},
		{"empty file, csv", nil, []string{"--format", "csv"}, []string{": empty file"}, 0},
		{"empty gzip", gzipped(nil), nil, []string{": empty file: its gzip stream (", " bytes) holds no text"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeTemp(t, "reply.out", tt.file)
			out, _, err := runParseCmd(t, nil, append([]string{p}, tt.args...)...)
			if err == nil {
				t.Fatalf("no error; stdout %d bytes", len(out))
			}
			msg := err.Error()
			rest := msg
			for _, part := range tt.wantErr {
				i := strings.Index(rest, part)
				if i < 0 {
					t.Fatalf("err = %q, want %q in it (after the parts before it)", msg, part)
				}
				rest = rest[i+len(part):]
			}
			if strings.Contains(msg, "line 0") {
				t.Errorf("err = %q says line 0", msg)
			}
			lines := strings.Count(out, "\n")
			if tt.lines < 0 {
				var n int
				if _, serr := fmt.Sscanf(rest, "%d observation(s)", &n); serr != nil || n < 1 || n != lines {
					t.Errorf("err says %q; stdout has %d lines", rest, lines)
				}
			} else if lines != tt.lines {
				t.Errorf("stdout has %d lines, want %d", lines, tt.lines)
			}
		})
	}
}
