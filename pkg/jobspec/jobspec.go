// Package jobspec reads and validates job files: the YAML documents that say what to ask the
// vendor for (securities, fields, dates) and when (an optional cron schedule). It sits at the
// very front of the pipeline: `marketpipe submit` goes through Load, so an invalid file is
// refused with every problem's line before anything is sent to the vendor (a request that
// fails there costs a vendor round trip, and may be billed).
package jobspec

import (
	"fmt"
	"os"
	"slices"
	"time"
	_ "time/tzdata" // tz: names IANA zones; service images may have no zoneinfo, and validation must not depend on the host.

	"github.com/marketpipe/marketpipe/pkg/events"
)

// Limits on one job. They are there to catch mistakes (a price file given as the universe, a
// field list pasted twice) and to keep one run within what the rest of the pipeline is sized
// for: the reply files grow with securities × fields (× dates for history). A job over the
// vendor's limits is cut into several vendor requests by the requester (vendor.Plan); much
// larger universes are better split into several jobs, which also run and retry independently.
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
	Start, End Date   // gethistory only
	Schedule   string // cron expression (5 fields, or a descriptor such as @daily); empty: on demand
	// TZ is the IANA time zone of Schedule and of relative dates' today; empty means UTC.
	TZ string
	// Calendar names the trading calendar (package calendar) of business days: scheduled
	// firings on other days are skipped, and -Nb counts its business days. Empty: weekdays.
	Calendar string
	// Deadline is how long the vendor may take before the job fails.
	Deadline time.Duration
	// Strict makes any warning of the reply file (unknown fields, return codes, rejected
	// lines) fail the run, so that its rows never become visible.
	Strict bool
	// Incremental (gethistory) asks the vendor only for the securities and dates that committed
	// runs of the same dataset have not loaded yet.
	Incremental bool
	// Path is the job file's path as given to Load or Parse.
	Path string
	// SecuritiesFile is the path of the securities file, resolved against the job file's
	// directory; empty when the securities are listed inline.
	SecuritiesFile string
	// Options are the request options (identifier types are in Securities: /ISIN/...).
	events.Options
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

// spec is the job's request with its dates as written (relative ones resolved by SpecAt).
func (f *File) spec() events.Spec {
	return events.Spec{
		Name:        f.Name,
		Program:     f.Program,
		Securities:  slices.Clone(f.Securities),
		Fields:      slices.Clone(f.Fields),
		Start:       f.Start.Fixed,
		End:         f.End.Fixed,
		Strict:      f.Strict,
		Incremental: f.Incremental,
		Options:     f.Options.Clone(),
	}
}
