package vendorsim

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Options configure a simulator. The zero value serves a vendor that is ready at once, with seed
// 0, no authentication and no faults.
type Options struct {
	// Account is the scheduled account the catalog list offers; default DefaultAccount.
	Account string
	// ReadyAfter is how long after its creation a request's output is listed.
	ReadyAfter time.Duration
	// ReadyJitter, when set, delays each output further by up to this much, a share drawn from
	// its request identifier: outputs then get ready at times unrelated to when they are polled.
	ReadyJitter time.Duration
	// Seed selects the simulated data (simdata's seed).
	Seed uint64
	// Revision is the revision of the data that requests created from now on get
	// (simdata.RevisedSeed): another revision changes every value, as a vendor's correction
	// does. POST /sim/revision moves it on while the simulator runs.
	Revision uint64
	// RunDate is every file's RUNDATE and getdata date; zero means the UTC date at which each
	// request was created.
	RunDate time.Time
	// Credentials, when set, make every request carry a valid per-request JWT signed with
	// them (signature, expiry, issuer, method and path are checked; a jti is accepted once)
	// or an unexpired bearer token from the OAuth2 endpoint TokenPath, which takes them as
	// client_id and client_secret.
	Credentials *vendor.Credentials
	// TokenTTL is the lifetime of the OAuth2 bearer tokens TokenPath issues when Credentials
	// are set (a request may carry one instead of a JWT); default DefaultTokenTTL.
	TokenTTL time.Duration
	// Layouts are the reply-file layouts the simulator writes in (simdata.Layouts); each
	// request gets one of those for its program, chosen by ChooseLayout from its identifier.
	// Empty means simdata.DefaultLayouts (the plain getdata, vertical gethistory and getactions layouts).
	// Every layout holds the same observations, so tests need not know which one a file has.
	Layouts []simdata.Layout
	// Dir is the directory each request's reply file is stored in, gzipped, once prepared; empty
	// means a temporary directory, made when the first file is prepared. Server.Close removes
	// the files it wrote (and the temporary directory).
	Dir string
	// Faults injects failures a robust client must survive.
	Faults Faults
	// Heartbeat is how often an idle notification stream (NotificationsPath) gets an empty
	// heartbeat event; default DefaultHeartbeat.
	Heartbeat time.Duration
	// Logger receives one line per request at Debug; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Faults are probabilities (0 to 1) of injected failures, drawn per request from a generator
// seeded with Options.Seed, so a sequential client sees the same faults on every run.
type Faults struct {
	Rate429 float64 // answer 429 with Retry-After
	Rate503 float64 // answer 503 with Retry-After
	// RetryAfter is the Retry-After sent with injected 429 and 503 answers; 0 sends none.
	RetryAfter time.Duration
	// ResetRate drops the connection without an answer, after the request was acted on: an
	// injected reset of a POST has created the request (the ambiguous case).
	ResetRate float64
	// TruncateRate cuts a download off halfway through the file.
	TruncateRate float64
	// CorruptRate changes one byte in the middle of a download, so its digest does not match.
	CorruptRate float64
	// MaxBadDownloads bounds the truncated or corrupt downloads of one reply file; the ones
	// after are clean, as a vendor's transient faults end (0: no bound). Without it a client
	// that backs off between attempts may meet a long run of bad draws.
	MaxBadDownloads int
	// SlowBody pauses this long after each 64 KiB of a download.
	SlowBody time.Duration
	// DuplicateEvents sends every notification twice (another event id, the same digest).
	DuplicateEvents bool
	// StaleEvents follows every notification with one for the same distribution with an earlier
	// endedAtTime and another digest, as an event delivered out of order would be.
	StaleEvents bool
}

// DefaultAccount is the scheduled account's identifier.
const DefaultAccount = "sim-account"

// DefaultReadyAfter is the -ready-after default.
const DefaultReadyAfter = 2 * time.Second

// RegisterFlags registers a flag for every option on fs, with the defaults the simulator binary
// uses. -credentials and -run-date are read and checked while the flags are parsed, so a bad
// file or date is a flag error.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	if o.Account == "" {
		o.Account = DefaultAccount
	}
	if o.ReadyAfter == 0 {
		o.ReadyAfter = DefaultReadyAfter
	}
	if o.Faults.RetryAfter == 0 {
		o.Faults.RetryAfter = time.Second
	}
	fs.StringVar(&o.Account, "account", o.Account, "identifier of the scheduled account in the catalog list")
	fs.DurationVar(&o.ReadyAfter, "ready-after", o.ReadyAfter,
		"how long after its creation a request's output is listed as ready")
	fs.DurationVar(&o.ReadyJitter, "ready-jitter", o.ReadyJitter,
		"delay each output further by up to this much, drawn from its request identifier")
	fs.Func("seed", "seed of the simulated data, an unsigned integer `n` (default 0)", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an unsigned integer")
		}
		o.Seed = n
		return nil
	})
	fs.Uint64Var(&o.Revision, "revision", o.Revision, "revision of the simulated data (0: the seed's own values); POST /sim/revision adds one")
	fs.Func("run-date", "RUNDATE of every reply file, a `date` YYYY-MM-DD (default: the UTC date at each request's creation)",
		func(s string) error {
			t, err := time.Parse(time.DateOnly, s)
			if err != nil {
				return fmt.Errorf("want YYYY-MM-DD")
			}
			o.RunDate = t
			return nil
		})
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	fs.Func("credentials", "vendor credentials JSON `file`; when set, every /eap request must carry a valid JWT header signed\n"+
		"with it, or Authorization: Bearer <token> from POST "+TokenPath+" (OAuth2 client_credentials\n"+
		"grant; client_id and client_secret from the file, in HTTP Basic auth or the form)",
		func(path string) error {
			c, err := vendor.LoadCredentials(path)
			if err != nil {
				return err
			}
			o.Credentials = c
			return nil
		})
	fs.DurationVar(&o.TokenTTL, "token-ttl", o.TokenTTL, "lifetime of the OAuth2 bearer tokens "+TokenPath+" issues")
	fs.Func("layouts", "comma-separated reply-file `layouts`, or all; each request gets one for its program, chosen\n"+
		"deterministically from its identifier (default "+simdata.DefaultLayouts+"). Layouts: "+
		strings.Join(simdata.LayoutNames(), ", "), func(s string) error {
		ls, err := simdata.ParseLayouts(s)
		if err != nil {
			return err
		}
		o.Layouts = ls
		return nil
	})
	fs.Func("dir", "existing `directory` to store each request's reply file in, gzipped, once prepared; the files\n"+
		"are removed at shutdown (default: a temporary directory, removed at shutdown)", func(s string) error {
		fi, err := os.Stat(s)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", s)
		}
		o.Dir = s
		return nil
	})
	fs.Float64Var(&o.Faults.Rate429, "fault-429", o.Faults.Rate429, "share (0-1) of requests answered 429 Too Many Requests")
	fs.Float64Var(&o.Faults.Rate503, "fault-503", o.Faults.Rate503, "share (0-1) of requests answered 503 Service Unavailable")
	fs.DurationVar(&o.Faults.RetryAfter, "retry-after", o.Faults.RetryAfter,
		"Retry-After sent with injected 429 and 503 answers, whole seconds (0: none)")
	fs.Float64Var(&o.Faults.ResetRate, "fault-reset", o.Faults.ResetRate,
		"share (0-1) of requests whose connection is dropped after the request was acted on")
	fs.Float64Var(&o.Faults.TruncateRate, "fault-truncate", o.Faults.TruncateRate,
		"share (0-1) of downloads cut off halfway")
	fs.Float64Var(&o.Faults.CorruptRate, "fault-corrupt", o.Faults.CorruptRate,
		"share (0-1) of downloads with one byte changed (digest mismatch)")
	fs.IntVar(&o.Faults.MaxBadDownloads, "fault-max-bad-downloads", o.Faults.MaxBadDownloads,
		"truncated or corrupt downloads of one reply file at most; later ones are clean (0: no bound)")
	fs.DurationVar(&o.Faults.SlowBody, "slow-body", o.Faults.SlowBody, "pause after each 64 KiB of a download")
	fs.DurationVar(&o.Heartbeat, "heartbeat", DefaultHeartbeat, "interval of the heartbeat events of an idle notification stream")
	fs.BoolVar(&o.Faults.DuplicateEvents, "fault-duplicate-events", o.Faults.DuplicateEvents,
		"send every notification twice")
	fs.BoolVar(&o.Faults.StaleEvents, "fault-stale-events", o.Faults.StaleEvents,
		"follow every notification with a stale one (earlier endedAtTime, another digest)")
}
