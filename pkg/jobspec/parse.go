package jobspec

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/marketpipe/marketpipe/pkg/events"
	"gopkg.in/yaml.v3"
)

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,62}$`)
	mnemonicRE = regexp.MustCompile(`^[A-Z0-9_]+$`)
	dateRE     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)
)

var knownKeys = []string{"name", "program", "securities", "securities_file", "fields", "start",
	"end", "schedule", "tz", "calendar", "deadline", "strict", "identifier_type", "overrides", "pricing_source",
	"pricing_source_exclusive", "periodicity", "currency", "incremental"}

type parser struct {
	path    string
	f       *File
	errs    Errors
	dropped int
	keys    map[string]*yaml.Node // key node of each key seen
	// order is, for each error, where it sorts in the job file: its line, the securities_file
	// line for problems inside that file, or after everything for missing keys.
	order      []int
	fileAnchor int
}

func (p *parser) errorAt(path string, line, col int, field, format string, args ...any) {
	if len(p.errs) >= maxReported {
		p.dropped++
		return
	}
	p.errs = append(p.errs, &Error{Path: path, Line: line, Column: col, Field: field,
		Reason: fmt.Sprintf(format, args...)})
	switch {
	case path != p.path:
		p.order = append(p.order, p.fileAnchor)
	case line == 0:
		p.order = append(p.order, math.MaxInt)
	default:
		p.order = append(p.order, line)
	}
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.errorAt(p.path, line, col, field, format, args...)
}

func (p *parser) parse(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "", "empty job file")
			return
		}
		p.yamlError(err)
		return
	}
	var extra yaml.Node
	if err := safeDecode(dec, &extra); err == nil {
		p.errorf(&extra, "", "more than one YAML document; a job file is one")
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "", "a job file is a mapping of keys (name, program, ...) to values")
		return
	}
	p.keys = make(map[string]*yaml.Node)
	values := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, "", "keys are plain names such as name or fields")
			continue
		}
		if !slices.Contains(knownKeys, k.Value) {
			if s := suggest(k.Value); s != "" {
				p.errorf(k, "", "unknown key %s (did you mean %s?)", show(k.Value), s)
			} else {
				p.errorf(k, "", "unknown key %s (known: %s)", show(k.Value), strings.Join(knownKeys, ", "))
			}
			continue
		}
		if first, ok := p.keys[k.Value]; ok {
			p.errorf(k, k.Value, "given twice (first at line %d)", first.Line)
			continue
		}
		p.keys[k.Value] = k
		values[k.Value] = resolve(v)
	}
	f := p.f
	if v, ok := values["name"]; ok {
		if s, ok := p.scalar("name", v); ok {
			if nameRE.MatchString(s) {
				f.Name = s
			} else {
				p.errorf(v, "name", "%s is not a job name (letters, digits and '-', starting with a letter or digit, at most 63)", show(s))
			}
		}
	} else {
		p.errorf(nil, "name", "missing")
	}
	if v, ok := values["program"]; ok {
		if s, ok := p.scalar("program", v); ok {
			if s == events.GetData || s == events.GetHistory || s == events.GetActions {
				f.Program = s
			} else {
				p.errorf(v, "program", "%s is not a program (getdata, gethistory or getactions)", show(s))
			}
		}
	} else {
		p.errorf(nil, "program", "missing (getdata, gethistory or getactions)")
	}
	p.securities(values["securities"], values["securities_file"])
	p.fields(values["fields"])
	p.dates(values["start"], values["end"])
	p.schedule(values["schedule"], values["tz"])
	p.calendarKey(values["calendar"])
	p.options(values)
	if v, ok := values["deadline"]; ok {
		if s, ok := p.scalar("deadline", v); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				p.errorf(v, "deadline", "%s is not a duration (such as 90m or 6h)", show(s))
			case d <= 0:
				p.errorf(v, "deadline", "%s: must be positive", show(s))
			default:
				f.Deadline = d
			}
		}
	}
	p.incremental(values["incremental"])
	if v, ok := values["strict"]; ok {
		if s, ok := p.scalar("strict", v); ok {
			switch s {
			case "true":
				f.Strict = true
			case "false":
			default:
				p.errorf(v, "strict", "%s: want true or false", show(s))
			}
		}
	}
}

// sortErrors puts errors in file order; the sort is stable, so problems on one line (or in the
// securities file) keep the order they were found in.
func sortErrors(errs Errors, order []int) {
	idx := make([]int, len(errs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(order[a], order[b]) })
	sorted := make(Errors, len(errs))
	for i, j := range idx {
		sorted[i] = errs[j]
	}
	copy(errs, sorted)
}

// safeDecode decodes the next document, turning a panic of the YAML parser into an error: job
// files arrive over HTTP too, and old yaml.v3 releases panicked on some malformed input.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// yamlError turns a YAML syntax error into an Error with its line.
func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			line++
		}
		p.errorAt(p.path, line, 0, "", "not valid YAML: %s", m[2])
		return
	}
	problem := strings.TrimPrefix(msg, "yaml: ")
	if yamlParserProblems[problem] {
		// yaml.v3 leaves out the line when it is 0, counted from 0: the first line.
		p.errorAt(p.path, 1, 0, "", "not valid YAML: %s", problem)
		return
	}
	p.errorAt(p.path, 0, 0, "", "not valid YAML: %s", problem)
}

// yamlParserProblems are the syntax errors of yaml.v3's parser (as opposed to its scanner),
// whose "line N" counts from 0 (yaml.v3 adds 1 only for its scanner's errors).
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// resolve follows an alias (*anchor) to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "a value"
}

// scalar returns a single non-empty value.
func (p *parser) scalar(field string, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		p.errorf(v, field, "want a single value, not %s", kindName(v))
		return "", false
	}
	if v.Tag == "!!null" || v.Value == "" {
		p.errorf(v, field, "empty")
		return "", false
	}
	return v.Value, true
}

// list returns the items of a non-empty sequence.
func (p *parser) list(field string, v *yaml.Node) ([]*yaml.Node, bool) {
	if v.Kind != yaml.SequenceNode {
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			p.errorf(v, field, "empty list")
		} else {
			p.errorf(v, field, "want a list, not %s", kindName(v))
		}
		return nil, false
	}
	if len(v.Content) == 0 {
		p.errorf(v, field, "empty list")
		return nil, false
	}
	return v.Content, true
}

func (p *parser) fields(v *yaml.Node) {
	if v == nil {
		if p.f.Program != events.GetActions { // actions files carry every field of each action
			p.errorf(nil, "fields", "missing")
		}
		return
	}
	items, ok := p.list("fields", v)
	if !ok {
		return
	}
	if len(items) > MaxFields {
		p.errorf(v, "fields", "%d fields; at most %d in one job", len(items), MaxFields)
	}
	seen := make(map[string]int, len(items))
	out := make([]string, 0, len(items))
	for _, it := range items {
		n := resolve(it)
		if n.Kind != yaml.ScalarNode {
			p.errorf(it, "fields", "want a field mnemonic, not %s", kindName(n))
			continue
		}
		s := n.Value
		if n.Tag == "!!null" {
			s = ""
		}
		switch {
		case s == "":
			p.errorf(it, "fields", "empty field")
			continue
		case len(s) > MaxFieldLen:
			p.errorf(it, "fields", "field of %d bytes; at most %d", len(s), MaxFieldLen)
			continue
		case !mnemonicRE.MatchString(s):
			if up := strings.ToUpper(s); mnemonicRE.MatchString(up) {
				p.errorf(it, "fields", "%s is not a field mnemonic: mnemonics are upper case (%s)", show(s), up)
			} else {
				p.errorf(it, "fields", "%s is not a field mnemonic (upper-case letters, digits and '_')", show(s))
			}
			continue
		}
		if first, dup := seen[s]; dup {
			p.errorf(it, "fields", "%s repeated (first at line %d)", s, first)
			continue
		}
		seen[s] = it.Line
		out = append(out, s)
	}
	p.f.Fields = out
}

func show(s string) string {
	if s == "" || s != strings.TrimSpace(s) || strings.IndexFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) && r != ' '
	}) >= 0 || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	return s
}

// suggest returns the known key closest to a mistyped one, if it is close.
func suggest(key string) string {
	best, bestD := "", 3
	for _, k := range knownKeys {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
