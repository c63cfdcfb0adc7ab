package natsx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// maxSecurityBytes bounds one identifier in a stored list, so a list of the most securities a
// job may have cannot make a reader hold more than a few megabytes.
const maxSecurityBytes = 64

// ErrSpecMissing is returned (wrapped) by ResolveSecurities when the stored list is gone or
// does not match its reference: no retry brings it back.
var ErrSpecMissing = errors.New("securities list not in the object store")

// ExternalizeSecurities moves s's securities list into the object store when it is longer
// than events.InlineSecurities, and leaves a reference in its place; a shorter list stays in
// the spec. The object is named after the job run, so a retried submit writes the same one.
func ExternalizeSecurities(ctx context.Context, store jetstream.ObjectStore, jobID string, s *events.Spec) error {
	if len(s.Securities) <= events.InlineSecurities {
		return nil
	}
	content := []byte(strings.Join(s.Securities, "\n"))
	sum := sha256.Sum256(content)
	ref := &events.ListRef{Object: jobID + "/securities", Count: len(s.Securities), SHA256: hex.EncodeToString(sum[:])}
	meta := jetstream.ObjectMeta{Name: ref.Object, Description: fmt.Sprintf("securities of job %s (%d)", jobID, ref.Count)}
	if _, err := store.Put(ctx, meta, bytes.NewReader(content)); err != nil {
		return fmt.Errorf("store the %d securities of job %s in %s: %w", ref.Count, jobID, events.SpecsBucket, err)
	}
	s.Securities, s.SecuritiesRef = nil, ref
	return nil
}

// ResolveSecurities returns s's securities list: inline, or read from the object store and
// checked against its reference. A list that is gone or altered gives an error wrapping
// ErrSpecMissing.
func ResolveSecurities(ctx context.Context, store jetstream.ObjectStore, s events.Spec) ([]string, error) {
	ref := s.SecuritiesRef
	if ref == nil {
		return s.Securities, nil
	}
	r, err := store.Get(ctx, ref.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%s %s: %w", events.SpecsBucket, ref.Object, ErrSpecMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", events.SpecsBucket, ref.Object, err)
	}
	defer r.Close()
	content, err := io.ReadAll(io.LimitReader(r, int64(ref.Count)*(maxSecurityBytes+1)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", events.SpecsBucket, ref.Object, err)
	}
	sum := sha256.Sum256(content)
	if hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("%s %s: content does not match its SHA-256 %s: %w", events.SpecsBucket, ref.Object, ref.SHA256, ErrSpecMissing)
	}
	list := strings.Split(string(content), "\n")
	if len(list) != ref.Count {
		return nil, fmt.Errorf("%s %s: %d securities, the reference says %d: %w", events.SpecsBucket, ref.Object, len(list), ref.Count, ErrSpecMissing)
	}
	return list, nil
}
