package jobspec

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

func (p *parser) securities(list, file *yaml.Node) {
	switch {
	case list != nil && file != nil:
		p.errorf(p.keys["securities_file"], "securities_file", "give securities or securities_file, not both")
		return
	case list == nil && file == nil:
		p.errorf(nil, "securities", "missing (or securities_file)")
		return
	case file != nil:
		p.securitiesFile(file)
		return
	}
	items, ok := p.list("securities", list)
	if !ok {
		return
	}
	if len(items) > MaxSecurities {
		p.errorf(list, "securities", "%d securities; at most %d in one job", len(items), MaxSecurities)
	}
	seen := make(map[string]int, len(items))
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, overrides := p.securityEntry(it)
		if s == "" {
			continue
		}
		if first, dup := seen[s]; dup {
			p.errorf(it, "securities", "%s repeated (first at line %d)", show(s), first)
			continue
		}
		seen[s] = it.Line
		out = append(out, s)
		if len(overrides) > 0 {
			if p.f.SecurityOverrides == nil {
				p.f.SecurityOverrides = map[string]map[string]string{}
			}
			p.f.SecurityOverrides[s] = overrides
		}
	}
	p.f.Securities = out
}

func (p *parser) securitiesFile(v *yaml.Node) {
	name, ok := p.scalar("securities_file", v)
	if !ok {
		return
	}
	p.fileAnchor = v.Line
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.path), path)
	}
	data, err := readBounded(path, maxSecuritiesFileBytes)
	if err != nil {
		p.errorf(v, "securities_file", "%v", err)
		return
	}
	p.f.SecuritiesFile = path
	if !utf8.Valid(data) {
		// Report the first bad line rather than failing per line below.
		for i, line := range bytes.Split(data, []byte("\n")) {
			if !utf8.Valid(line) {
				p.errorAt(path, i+1, 0, "", "not valid UTF-8")
				return
			}
		}
	}
	seen := make(map[string]int)
	var out []string
	n := 0
	for i, raw := range strings.Split(string(data), "\n") {
		line := i + 1
		s := strings.TrimSpace(raw)
		if s == "" || s[0] == '#' {
			continue
		}
		n++
		if n > MaxSecurities {
			continue // counted, reported once below
		}
		reason := checkSecurity(s)
		if reason == "" {
			reason = vendor.CheckSecurity(s)
		}
		if reason != "" {
			p.errorAt(path, line, 1, "", "%s", reason)
			continue
		}
		if typ, v := vendor.SplitSecurity(s); strings.HasPrefix(s, "/") {
			s = "/" + typ + "/" + v
			if typ == "TICKER" {
				s = v
			}
		}
		if first, dup := seen[s]; dup {
			p.errorAt(path, line, 1, "", "%s repeated (first at line %d)", show(s), first)
			continue
		}
		seen[s] = line
		out = append(out, s)
	}
	switch {
	case n == 0:
		p.errorAt(path, 0, 0, "", "no securities (only blank lines and comments)")
	case n > MaxSecurities:
		p.errorAt(path, 0, 0, "", "%d securities; at most %d in one job", n, MaxSecurities)
	}
	p.f.Securities = out
}

// readBounded reads a file that must not be larger than limit.
func readBounded(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	// Only regular files: a FIFO or a device such as /dev/stdin would block or never end.
	if st, err := fh.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, limit>>20)
	}
	return data, nil
}

// checkSecurity returns why s cannot be requested, or "".
func checkSecurity(s string) string {
	switch {
	case s == "":
		return "empty security"
	case len(s) > MaxSecurityLen:
		return fmt.Sprintf("security of %d bytes; at most %d", len(s), MaxSecurityLen)
	case !utf8.ValidString(s):
		return fmt.Sprintf("%s is not valid UTF-8", show(s))
	case strings.ContainsRune(s, '|'):
		return fmt.Sprintf("%s contains '|', the reply file's delimiter", show(s))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Sprintf("%s contains a control character", show(s))
	}
	return ""
}
