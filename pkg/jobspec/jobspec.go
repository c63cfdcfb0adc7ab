// Package jobspec reads and validates job files: the YAML documents that say what to ask the
// vendor for (securities, fields, dates) and when (an optional cron schedule). It sits at the
// very front of the pipeline: `marketpipe submit` goes through Load, so an invalid file is
// refused with every problem's line before anything is sent to the vendor (a request that
// fails there costs a vendor round trip, and may be billed).
package jobspec

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // tz: names IANA zones; service images may have no zoneinfo, and validation must not depend on the host.
	"unicode"
	"unicode/utf8"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// Limits on one job. They are there to catch mistakes (a price file given as the universe, a
// field list pasted twice) and to keep one run within what the rest of the pipeline is sized
// for: the reply file grows with securities × fields (× dates for history), and one run is one
// vendor request, one downloaded file and one transformer pass. Larger universes are better
// split into several jobs, which also run and retry independently.
const (
	MaxSecurities = 100_000
	MaxFields     = 1_000
	// MaxSecurityLen bounds one identifier; real ones (tickers with yellow keys, ISINs, FIGIs
	// with prefixes) are far shorter, so a longer one is a wrong line.
	MaxSecurityLen = 256
	// MaxFieldLen bounds one field mnemonic; Bloomberg's are at most a few dozen characters.
	MaxFieldLen = 64
	// DefaultDeadline is how long the vendor may take when the file sets no deadline: large
	// history requests can take hours to be prepared.
	DefaultDeadline = 6 * time.Hour
)

const (
	// maxReported bounds the problems reported for one file: a wrong securities_file can
	// produce one per line, and the first hundred say enough.
	maxReported = 100
	// maxSecuritiesFileBytes bounds the securities file read into memory: MaxSecurities lines of
	// MaxSecurityLen, with room for comments.
	maxSecuritiesFileBytes = 64 << 20
)

// File is a validated job file.
type File struct {
	Name       string
	Program    string // events.GetData or events.GetHistory
	Securities []string
	Fields     []string
	Start, End string // YYYY-MM-DD; gethistory only
	Schedule   string // cron expression (5 fields, or a descriptor such as @daily); empty: on demand
	TZ         string // IANA time zone of Schedule; empty means UTC
	// Deadline is how long the vendor may take before the job fails.
	Deadline time.Duration
	// Strict makes any warning of the reply file (unknown fields, return codes, rejected
	// lines) fail the run, so that its rows never become visible.
	Strict bool
	// Path is the job file's path as given to Load or Parse.
	Path string
	// SecuritiesFile is the path of the securities file, resolved against the job file's
	// directory; empty when the securities are listed inline.
	SecuritiesFile string
}

// Error is one problem in a job file or its securities file.
type Error struct {
	Path         string // the file with the problem: the job file, or its securities_file
	Line, Column int    // 1-based; 0 when the problem has no single place (a missing key)
	Field        string // the job file key concerned, if any
	Reason       string
}

// Error formats the problem as path:line: field: reason, the form editors and CI logs link.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
	} else {
		b.WriteString("job file")
	}
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in a job file, in file order. Parse reports them all at once so
// that one edit fixes a file, rather than one edit per problem.
type Errors []*Error

// Error lists the problems, one a line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads and validates the job file at path, and its securities_file if it names one.
// A file that cannot be read gives the read error; an invalid one gives Errors.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load job file: %w", err)
	}
	return Parse(data, path)
}

// Parse validates a job file's contents. path is used in messages and to resolve a relative
// securities_file, which Parse reads from the local file system: a server that accepts job
// files from remote users should not hand them to Parse unchecked, or they can name its files.
// The error, when not nil, is Errors.
func Parse(data []byte, path string) (*File, error) {
	p := &parser{path: path, f: &File{Path: path, Deadline: DefaultDeadline}}
	p.parse(data)
	if len(p.errs) > 0 {
		sortErrors(p.errs, p.order)
		if p.dropped > 0 {
			p.errs = append(p.errs, &Error{Path: path,
				Reason: fmt.Sprintf("%d more problems not shown", p.dropped)})
		}
		return nil, p.errs
	}
	return p.f, nil
}

// Spec returns what the job asks of the vendor. The slices are copies, so the event can be
// changed without changing f.
func (f *File) Spec() events.Spec {
	return events.Spec{
		Name:       f.Name,
		Program:    f.Program,
		Securities: slices.Clone(f.Securities),
		Fields:     slices.Clone(f.Fields),
		Start:      f.Start,
		End:        f.End,
		Strict:     f.Strict,
	}
}

// NextRun returns the first scheduled time strictly after after, in the schedule's time zone.
// It reports false when the job has no schedule (or one that no longer parses, for a File not
// built by Parse) or the schedule never fires again.
func (f *File) NextRun(after time.Time) (time.Time, bool) {
	if f.Schedule == "" {
		return time.Time{}, false
	}
	sched, err := cron.ParseStandard(f.Schedule)
	if err != nil {
		return time.Time{}, false
	}
	loc, err := location(f.TZ)
	if err != nil {
		return time.Time{}, false
	}
	next := sched.Next(after.In(loc))
	if next.IsZero() {
		return time.Time{}, false
	}
	return next, true
}

// location loads an IANA zone; empty means UTC. "Local" is refused: a schedule must not change
// meaning with the host it runs on.
func location(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, errors.New("Local depends on the host; name the zone")
	}
	return time.LoadLocation(name)
}

// lowerBase32 is RFC 4648 base32 in lower case: letters and digits only, which suits both NATS
// subject tokens and the vendor's request identifiers.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewJobID returns a new job id for a run of the job called name starting at at, such as
// eod-prices-20261125t045724z-k3qa. It is a single NATS subject token (lower-case letters,
// digits and '-'), sorts by start time within a job, and is unique per run: two runs of one job
// in the same second differ by 20 random bits. A name that is not a valid job name is made
// into one rather than refused, since ids must always be publishable.
func NewJobID(name string, at time.Time) string {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:]) // never fails since Go 1.24
	stamp := strings.ToLower(at.UTC().Format("20060102T150405Z"))
	return tokenName(name) + "-" + stamp + "-" + lowerBase32.EncodeToString(rnd[:])[:4]
}

// tokenName lower-cases name and replaces anything but letters, digits and '-'.
func tokenName(name string) string {
	b := make([]byte, 0, len(name))
	for i := 0; i < len(name) && len(b) < 63; i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		default:
			b = append(b, '-')
		}
	}
	if len(b) == 0 {
		return "job"
	}
	return string(b)
}

// VendorRequestID returns the identifier under which a job run is requested from the vendor:
// "mp" and 19 base32 characters (95 bits) of a SHA-256 of the job id and generation. The
// vendor allows letters and digits, at most 21 characters, unique per account. It is derived,
// not stored, so that a requester that crashed after a POST computes the same identifier again
// and can look the request up instead of submitting (and paying for) it twice; a replay is a
// new generation and so a new request.
func VendorRequestID(jobID string, generation int) string {
	h := sha256.Sum256([]byte(jobID + "\x00g" + strconv.Itoa(generation)))
	return "mp" + lowerBase32.EncodeToString(h[:])[:19]
}

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,62}$`)
	mnemonicRE = regexp.MustCompile(`^[A-Z0-9_]+$`)
	dateRE     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)
)

var knownKeys = []string{"name", "program", "securities", "securities_file", "fields", "start",
	"end", "schedule", "tz", "deadline", "strict"}

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
			if s == events.GetData || s == events.GetHistory {
				f.Program = s
			} else {
				p.errorf(v, "program", "%s is not a program (getdata or gethistory)", show(s))
			}
		}
	} else {
		p.errorf(nil, "program", "missing (getdata or gethistory)")
	}
	p.securities(values["securities"], values["securities_file"])
	p.fields(values["fields"])
	p.dates(values["start"], values["end"])
	p.schedule(values["schedule"], values["tz"])
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
		v := resolve(it)
		if v.Kind != yaml.ScalarNode {
			p.errorf(it, "securities", "want a security identifier, not %s", kindName(v))
			continue
		}
		s := strings.TrimSpace(v.Value)
		if v.Tag == "!!null" {
			s = ""
		}
		if reason := checkSecurity(s); reason != "" {
			p.errorf(it, "securities", "%s", reason)
			continue
		}
		if first, dup := seen[s]; dup {
			p.errorf(it, "securities", "%s repeated (first at line %d)", show(s), first)
			continue
		}
		seen[s] = it.Line
		out = append(out, s)
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
		if reason := checkSecurity(s); reason != "" {
			p.errorAt(path, line, 1, "", "%s", reason)
			continue
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

func (p *parser) fields(v *yaml.Node) {
	if v == nil {
		p.errorf(nil, "fields", "missing")
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

func (p *parser) dates(start, end *yaml.Node) {
	prog := p.f.Program
	if prog == events.GetData {
		if start != nil {
			p.errorf(p.keys["start"], "start", "only gethistory takes a date range")
		}
		if end != nil {
			p.errorf(p.keys["end"], "end", "only gethistory takes a date range")
		}
		return
	}
	parse := func(field string, v *yaml.Node) (string, time.Time, bool) {
		if v == nil {
			if prog == events.GetHistory {
				p.errorf(nil, field, "missing (gethistory needs start and end)")
			}
			return "", time.Time{}, false
		}
		s, ok := p.scalar(field, v)
		if !ok {
			return "", time.Time{}, false
		}
		if !dateRE.MatchString(s) {
			p.errorf(v, field, "%s is not a date (YYYY-MM-DD)", show(s))
			return "", time.Time{}, false
		}
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			p.errorf(v, field, "%s is not a real date", s)
			return "", time.Time{}, false
		}
		return s, t, true
	}
	s, st, okS := parse("start", start)
	e, et, okE := parse("end", end)
	if okS && okE && st.After(et) {
		p.errorf(start, "start", "%s is after end %s", s, e)
		return
	}
	if okS && okE && prog == events.GetHistory {
		p.f.Start, p.f.End = s, e
	}
}

func (p *parser) schedule(sv, tv *yaml.Node) {
	loc := time.UTC
	if tv != nil {
		s, ok := p.scalar("tz", tv)
		if ok {
			l, err := location(s)
			if err != nil {
				p.errorf(tv, "tz", "%s is not a time zone (an IANA name such as Europe/London)", show(s))
			} else {
				loc = l
				p.f.TZ = s
			}
		}
		if sv == nil {
			p.errorf(p.keys["tz"], "tz", "only used with schedule")
		}
	}
	if sv == nil {
		return
	}
	s, ok := p.scalar("schedule", sv)
	if !ok {
		return
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		p.errorf(sv, "schedule", "give the time zone with tz:, not in the schedule")
		return
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		p.errorf(sv, "schedule", "%s is not a cron schedule (minute hour day-of-month month day-of-week): %v", show(s), err)
		return
	}
	if sched.Next(time.Now().In(loc)).IsZero() {
		p.errorf(sv, "schedule", "%s never fires", show(s))
		return
	}
	p.f.Schedule = s
}

// show prints s bare when that is unambiguous, quoted otherwise.
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
