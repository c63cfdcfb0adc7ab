package deploy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	mpstage "github.com/marketpipe/marketpipe/pkg/stage"
)

// TestShippedNATSConfAdmitsTheLargestJobEvent runs nats-server with deploy/nats/nats.conf (a
// temporary copy whose listen, http and store_dir lines point at loopback ports and a
// temporary directory: nothing else changes), declares the pipeline's streams with the default
// configuration (so the default NATS_MAX_BYTES must fit the file's max_file_store), and
// publishes the largest job event a stage accepts, with a publish's headers: the broker must
// take it. One byte more than max_payload must be refused, as it would be in production.
func TestShippedNATSConfAdmitsTheLargestJobEvent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	text := string(readFile(t, "deploy/nats/nats.conf"))
	dir := t.TempDir()
	for _, r := range []struct{ key, value string }{
		{"listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))},
		{"http", fmt.Sprintf("127.0.0.1:%d", freePort(t))},
		{"store_dir", filepath.Join(dir, "jetstream")},
	} {
		re := regexp.MustCompile(`(?m)^(\s*` + r.key + `:\s*)\S+\s*$`)
		if len(re.FindAllString(text, -1)) != 1 {
			t.Fatalf("deploy/nats/nats.conf: want one %s line to rewrite", r.key)
		}
		text = re.ReplaceAllString(text, "${1}"+r.value)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server rejects the copy of deploy/nats/nats.conf: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(15 * time.Second) {
		t.Fatal("nats-server with deploy/nats/nats.conf did not start")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.Setup(ctx, js, natsx.RetentionFor(cfg.NATS, nil)); err != nil {
		t.Fatalf("the default NATS_MAX_BYTES (%d) does not fit deploy/nats/nats.conf: %v", cfg.NATS.MaxBytes, err)
	}

	j := largestJob(t)
	data, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	hdr := nats.Header{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	if err := mpstage.NewPublisher(js).Publish(ctx, events.JobSubject(j.ID, j.State), j.MsgID(j.State), data, hdr); err != nil {
		t.Fatalf("the broker refuses a job event of %d bytes (events.MaxJobEventBytes %d): %v", len(data), events.MaxJobEventBytes, err)
	}
	if err := nc.Publish("mp.probe", make([]byte, opts.MaxPayload+1)); err == nil {
		if err = nc.Flush(); err == nil {
			err = nc.LastError()
		}
		if err == nil {
			t.Errorf("a message of max_payload+1 bytes was accepted: the limit is not %d", opts.MaxPayload)
		}
	}

	// What jobs fit, for the record: ISIN-length identifiers, with five fields.
	small := events.Job{ID: j.ID, Spec: events.Spec{Name: "isins", Program: "gethistory",
		Fields: []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME"}, Start: "2025-01-01", End: "2025-12-31"}}
	base, _ := small.Encode()
	perISIN := len(`"US0378331005",`)
	t.Logf("max_payload %d bytes; largest job event %d bytes with %d bytes of headers room: %d ISIN-length identifiers "+
		"(jobspec admits %d)", opts.MaxPayload, events.MaxJobEventBytes, events.MaxHeaderBytes,
		(events.MaxJobEventBytes-len(base))/perISIN, jobspec.MaxSecurities)
}

// largestJob is a job event at the end of its run, with every field a stage fills and as many
// securities as keep it within events.MaxJobEventBytes.
func largestJob(t *testing.T) events.Job {
	t.Helper()
	fields := make([]string, jobspec.MaxFields)
	for i := range fields {
		fields[i] = fmt.Sprintf("F%0*d", jobspec.MaxFieldLen-1, i)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	j := events.Job{ID: "largest-20261202T100000Z-abcdef", Generation: 3, State: events.Loaded, Version: 1 << 62,
		Spec:     events.Spec{Name: "largest", Program: "gethistory", Fields: fields, Start: "2025-01-01", End: "2025-12-31"},
		Deadline: now, SubmittedAt: now, RequestedAt: now, ReadyAt: now, CollectedAt: now, TransformedAt: now, LoadedAt: now,
		VendorRequestID: strings.Repeat("r", 64), VendorAccount: "123456", ResponseKey: strings.Repeat("k", 128),
		ResponseDigest: "sha512=" + strings.Repeat("d", 88), FileKey: strings.Repeat("f", 200),
		FileSHA256: strings.Repeat("a", 64), FileSize: 1 << 40, Polls: 1 << 20}
	for i := range events.MaxFileMarks {
		j.FileMarks = append(j.FileMarks, events.FileMark{Offset: 1<<40 + int64(i), Line: 1<<30 + int64(i)})
	}
	size := func() int {
		b, err := j.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	for size() < events.MaxJobEventBytes-2*jobspec.MaxSecurityLen {
		n := (events.MaxJobEventBytes - size()) / (jobspec.MaxSecurityLen + 3)
		for range max(n, 1) {
			j.Spec.Securities = append(j.Spec.Securities, fmt.Sprintf("%0*d", jobspec.MaxSecurityLen, len(j.Spec.Securities)))
		}
	}
	// Exactly events.MaxJobEventBytes: a security adds its length and 3 bytes ("",).
	add := func(n int) { j.Spec.Securities = append(j.Spec.Securities, strings.Repeat("S", n)) }
	for diff := events.MaxJobEventBytes - size(); diff != 0; diff = events.MaxJobEventBytes - size() {
		switch {
		case diff >= 4 && diff-3 <= jobspec.MaxSecurityLen:
			add(diff - 3)
		case diff > jobspec.MaxSecurityLen+3:
			add(min(jobspec.MaxSecurityLen, diff-7))
		default:
			j.Spec.Securities = j.Spec.Securities[:len(j.Spec.Securities)-1]
		}
	}
	return j
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
