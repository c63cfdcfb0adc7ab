package jobspec

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
	"time"
)

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

// PartRequestID returns the identifier of part i of a job run split into several vendor
// requests (pkg/vendor's Plan): derived like VendorRequestID, from the job id, the generation
// and the part's index, so that a requester that crashed submits the same parts again and the
// vendor refuses the ones it already has.
func PartRequestID(jobID string, generation, part int) string {
	h := sha256.Sum256([]byte(jobID + "\x00g" + strconv.Itoa(generation) + "\x00p" + strconv.Itoa(part)))
	return "mp" + lowerBase32.EncodeToString(h[:])[:19]
}

// ScheduledJobID returns the job id of a schedule's firing for the time at, such as
// eod-prices-20261202t220000z: derived from the schedule's name and the firing's time alone, so
// a firing handled twice (two replicas, a redelivery) is one job and one vendor request. It
// differs from every NewJobID, which ends in four random characters.
func ScheduledJobID(name string, at time.Time) string {
	return tokenName(name) + "-" + strings.ToLower(at.UTC().Format("20060102T150405Z"))
}

// BackfillName is the default name of a backfill of the job called job from from to to
// (YYYY-MM-DD): eod-prices-20050101-20241231. It is a valid job id prefix and key-value key.
func BackfillName(job, from, to string) string {
	return tokenName(job) + "-" + strings.ReplaceAll(from, "-", "") + "-" + strings.ReplaceAll(to, "-", "")
}

// BackfillJobID returns the job id of a backfill's window (1-based) in its attempt (1-based),
// such as eod-prices-20050101-20241231-w003, and eod-prices-20050101-20241231-w003-r2 for the
// second attempt: derived from the backfill's name, the window and the attempt alone, so a
// backfill run again finds its jobs instead of asking the vendor again. It differs from every
// NewJobID and ScheduledJobID, which end in a time or four random characters. backfill must be
// a valid name (letters, digits, '-' and '_', as BackfillName's are).
func BackfillJobID(backfill string, window, attempt int) string {
	id := backfill + "-w" + fmt.Sprintf("%03d", window)
	if attempt > 1 {
		id += "-r" + strconv.Itoa(attempt)
	}
	return id
}
