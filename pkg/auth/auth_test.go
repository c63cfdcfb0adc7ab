package auth_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/collector"
	"github.com/marketpipe/marketpipe/services/loader"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/transformer"
)

// deployment is a server running `auth init`'s configuration, with the streams and consumers
// the admin declared.
type deployment struct {
	url, dir string
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "creds")
	if _, err := auth.Init(dir, services.Identities()); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Init(dir, services.Identities()); err == nil {
		t.Error("a second auth init into the same directory overwrote its credentials")
	}
	srv := natstest.StartConf(t, dir, "include "+auth.ServerInclude)
	d := &deployment{url: srv.ClientURL(), dir: dir}
	admin := d.connect(t, auth.AdminName)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := services.Setup(ctx, admin.js, natsx.Retention{}, 0); err != nil {
		t.Fatalf("setup as admin: %v", err)
	}
	return d
}

// client is one identity's connection, recording the permission violations the server reports.
type client struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex
	errs []string
}

func (d *deployment) creds(name string) string { return filepath.Join(d.dir, auth.CredsFile(name)) }

func (d *deployment) connect(t *testing.T, name string) *client {
	t.Helper()
	c := &client{name: name}
	nc, err := nats.Connect(d.url, nats.UserCredentials(d.creds(name)), nats.CustomInboxPrefix(natsx.InboxPrefix(name)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err.Error())
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// refused runs op, which must fail, and waits for the server to report a permissions
// violation naming subject.
func (c *client) refused(t *testing.T, what, subject string, op func(ctx context.Context) error) {
	t.Helper()
	c.mu.Lock()
	c.errs = nil
	c.mu.Unlock()
	// The server refuses at once; the client learns it asynchronously, so op ends at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := op(ctx); err == nil {
		t.Errorf("%s %s: allowed, want refused", c.name, what)
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.mu.Lock()
		errs := strings.Join(c.errs, "\n")
		c.mu.Unlock()
		if strings.Contains(strings.ToLower(errs), "permissions violation") && strings.Contains(errs, subject) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s %s: failed, but the server reported no permissions violation for %s (%q)", c.name, what, subject, errs)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allowed runs op, which must succeed.
func (c *client) allowed(t *testing.T, what string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := op(ctx); err != nil {
		t.Errorf("%s %s: %v, want allowed", c.name, what, err)
	}
}

func publish(c *client, subject string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.js.Publish(ctx, subject, []byte("{}"))
		return err
	}
}

// pull asks for one message of a durable consumer, as a stage does.
func pull(c *client, stream, consumer string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT."+stream+"."+consumer, []byte(`{"batch":1,"no_wait":true}`))
		return err
	}
}

// TestEachIdentityDoesItsJobOnly: with the credentials `auth init` writes, on a server running
// its configuration, each identity can do its work and the server refuses the rest.
func TestEachIdentityDoesItsJobOnly(t *testing.T) {
	d := newDeployment(t)
	job := "j-auth-1"

	// What every stage may do: bind, pull from its own consumers, publish its events.
	for _, s := range services.All {
		c := d.connect(t, s.Name)
		c.allowed(t, "binds the streams", func(ctx context.Context) error { _, err := natsx.Bind(ctx, c.js); return err })
		for _, cons := range s.Uses.Consumers {
			c.allowed(t, "pulls from its consumer "+cons.Name, func(ctx context.Context) error {
				cc, err := c.js.Consumer(ctx, cons.Stream, cons.Name)
				if err != nil {
					return err
				}
				_, err = cc.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))
				return err
			})
		}
	}

	// What no stage may do: stop the pipeline, or take another's work.
	t.Run("stages", func(t *testing.T) {
		for _, s := range services.All {
			t.Run(s.Name, func(t *testing.T) {
				t.Parallel()
				refusedToEveryStage(t, d, s)
			})
		}
	})

	tr := d.connect(t, transformer.Name)
	tr.allowed(t, "publishes a row batch", publish(tr, events.RowsSubject(job)))
	tr.allowed(t, "publishes transformed", publish(tr, events.JobSubject(job, events.Transformed)))
	tr.allowed(t, "records a chunk", func(ctx context.Context) error {
		_, err := tr.js.Publish(ctx, "$KV."+events.ChunksBucket+"."+natsx.ChunkKey(job, 1, 0), []byte("x"))
		return err
	})
	tr.refused(t, "publishes loaded", events.JobSubject(job, events.Loaded), publish(tr, events.JobSubject(job, events.Loaded)))
	tr.refused(t, "publishes ready", events.JobSubject(job, events.Ready), publish(tr, events.JobSubject(job, events.Ready)))
	tr.refused(t, "writes the ledger", "$KV.mp_ledger.", publish(tr, "$KV."+events.LedgerBucket+"."+natsx.LedgerKey(job, 1, 0)))
	tr.refused(t, "writes a raw file", "$O.mp_raw.", publish(tr, "$O."+events.RawBucket+".M.x"))

	col := d.connect(t, collector.Name)
	col.allowed(t, "stores a raw file", func(ctx context.Context) error {
		o, err := col.js.ObjectStore(ctx, events.RawBucket)
		if err != nil {
			return err
		}
		_, err = o.Put(ctx, jetstream.ObjectMeta{Name: job + "/reply"}, bytes.NewReader([]byte("raw")))
		return err
	})
	col.refused(t, "writes the ledger", "$KV.mp_ledger.", publish(col, "$KV."+events.LedgerBucket+"."+natsx.LedgerKey(job, 1, 0)))
	col.refused(t, "publishes a row batch", events.RowsSubject(job), publish(col, events.RowsSubject(job)))

	tr.allowed(t, "reads a raw file", func(ctx context.Context) error {
		o, err := tr.js.ObjectStore(ctx, events.RawBucket)
		if err != nil {
			return err
		}
		_, err = o.GetBytes(ctx, job+"/reply")
		return err
	})
	pol := d.connect(t, poller.Name)
	pol.allowed(t, "publishes ready", publish(pol, events.JobSubject(job, events.Ready)))
	pol.refused(t, "reads mp_raw", "$JS.API.STREAM.MSG.GET.OBJ_mp_raw", func(ctx context.Context) error {
		o, err := pol.js.ObjectStore(ctx, events.RawBucket)
		if err != nil {
			return err
		}
		_, err = o.GetBytes(ctx, job+"/reply")
		return err
	})
	pol.refused(t, "reads mp_raw by message", "$JS.API.STREAM.MSG.GET.OBJ_mp_raw", func(ctx context.Context) error {
		_, err := pol.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.OBJ_mp_raw", []byte(`{"seq":1}`))
		return err
	})
	pol.refused(t, "subscribes to another's replies", "_INBOX_transformer.>", func(ctx context.Context) error {
		sub, err := pol.nc.SubscribeSync("_INBOX_transformer.>")
		if err != nil {
			return err
		}
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})

	ld := d.connect(t, loader.Name)
	ld.allowed(t, "records a loaded batch", func(ctx context.Context) error {
		kv, err := ld.js.KeyValue(ctx, events.LedgerBucket)
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, natsx.LedgerKey(job, 1, 0), []byte("1"))
		return err
	})
	ld.allowed(t, "reads the runs of a job", func(ctx context.Context) error {
		_, err := natsx.RunVersions(ctx, ld.js, job)
		return err
	})
	ld.allowed(t, "publishes loaded", publish(ld, events.JobSubject(job, events.Loaded)))
	ld.refused(t, "publishes a row batch", events.RowsSubject(job), publish(ld, events.RowsSubject(job)))

	// The requester turns schedule firings into jobs: it publishes "submitted" (a long
	// securities list goes to mp_specs), but no other stage's event, and no row batch; the
	// poller may not end a run.
	rq := d.connect(t, requester.Name)
	rq.allowed(t, "submits a scheduled job", publish(rq, events.JobSubject(job, events.Submitted)))
	rq.refused(t, "publishes collected", events.JobSubject(job, events.Collected), publish(rq, events.JobSubject(job, events.Collected)))
	rq.refused(t, "writes the ledger", "$KV."+events.LedgerBucket+".", publish(rq, "$KV."+events.LedgerBucket+".x"))
	// It claims the end of an incremental run with nothing to ask, as the loader claims a commit.
	rq.allowed(t, "claims the end of a run", publish(rq, "$KV."+events.EndsBucket+".x"))
	pol.refused(t, "cancels a run", "$KV."+events.EndsBucket+".", publish(pol, "$KV."+events.EndsBucket+".x"))

	op := d.connect(t, auth.OperatorName)
	op.allowed(t, "submits a job", publish(op, events.JobSubject(job, events.Submitted)))
	op.allowed(t, "fires a schedule", publish(op, events.ScheduleFire("x")))
	op.allowed(t, "records a cancel", publish(op, "$KV."+events.EndsBucket+".x"))
	op.allowed(t, "stores a securities list", func(ctx context.Context) error {
		o, err := op.js.ObjectStore(ctx, events.SpecsBucket)
		if err != nil {
			return err
		}
		_, err = o.Put(ctx, jetstream.ObjectMeta{Name: job + "/securities"}, bytes.NewReader([]byte("A\nB")))
		return err
	})
	op.allowed(t, "reads a job's attempts", func(ctx context.Context) error {
		_, err := attempts.OfJob(ctx, op.js, job)
		return err
	})
	op.allowed(t, "reads a job's events", func(ctx context.Context) error {
		s, err := op.js.Stream(ctx, events.JobsStream)
		if err != nil {
			return err
		}
		_, err = s.GetLastMsgForSubject(ctx, events.JobSubject(job, "*"))
		return err
	})
	op.refused(t, "publishes a row batch", events.RowsSubject(job), publish(op, events.RowsSubject(job)))
	op.refused(t, "pulls from the poller's consumer", "$JS.API.CONSUMER.MSG.NEXT.MP_JOBS.poller", pull(op, events.JobsStream, poller.Name))
	op.refused(t, "reads mp_raw", "$JS.API.STREAM.MSG.GET.OBJ_mp_raw", func(ctx context.Context) error {
		_, err := op.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.OBJ_mp_raw", []byte(`{"seq":1}`))
		return err
	})
}

// TestAnotherStagesCredentialsStopTheStart: a service given another identity's credentials
// stops at start, saying whose they are.
func TestAnotherStagesCredentialsStopTheStart(t *testing.T) {
	d := newDeployment(t)
	vars := map[string]string{"NATS_URL": d.url, "NATS_CREDS": d.creds(transformer.Name)}
	lookup := config.Lookup(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	cfg, err := config.Load(lookup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = service.NewEnv(ctx, loader.Name, cfg, lookup, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "holds the credentials of transformer, not of loader") {
		t.Fatalf("loader with the transformer's credentials: %v", err)
	}
	cfg.NATS.Creds = d.creds(loader.Name)
	env, err := service.NewEnv(ctx, loader.Name, cfg, lookup, io.Discard)
	if err != nil {
		t.Fatalf("loader with its own credentials: %v", err)
	}
	env.NC.Close()
}

// TestCredentialsFitTheControlLine: a user JWT travels in the CONNECT line, which the include
// bounds (auth.MaxControlLine): each identity's must fit with room to spare.
func TestCredentialsFitTheControlLine(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.Init(dir, services.Identities()); err != nil {
		t.Fatal(err)
	}
	for _, id := range services.Identities() {
		data, err := os.ReadFile(filepath.Join(dir, auth.CredsFile(id.Name)))
		if err != nil {
			t.Fatal(err)
		}
		token, err := jwt.ParseDecoratedJWT(data)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: user JWT of %d bytes", id.Name, len(token))
		if len(token) > auth.MaxControlLine/2 {
			t.Errorf("%s: user JWT of %d bytes, more than half of max_control_line %d", id.Name, len(token), auth.MaxControlLine)
		}
	}
}

// refusedToEveryStage: no stage may stop the pipeline, or take another's work.
func refusedToEveryStage(t *testing.T, d *deployment, s services.Service) {
	c := d.connect(t, s.Name)
	c.refused(t, "deletes a stream", "$JS.API.STREAM.DELETE.MP_JOBS",
		func(ctx context.Context) error { return c.js.DeleteStream(ctx, events.JobsStream) })
	c.refused(t, "purges a stream", "$JS.API.STREAM.PURGE.MP_ROWS",
		func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.MP_ROWS", nil)
			return err
		})
	c.refused(t, "deletes the ledger", "$JS.API.STREAM.DELETE.KV_mp_ledger",
		func(ctx context.Context) error { return c.js.DeleteKeyValue(ctx, events.LedgerBucket) })
	c.refused(t, "purges the ledger", "$JS.API.STREAM.PURGE.KV_mp_ledger", func(ctx context.Context) error {
		_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.KV_mp_ledger", nil)
		return err
	})
	c.refused(t, "creates a stream", "$JS.API.STREAM.CREATE.EVIL", func(ctx context.Context) error {
		_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
		return err
	})
	for _, other := range services.All {
		for _, cons := range other.Uses.Consumers {
			subj := "$JS.API.CONSUMER.DELETE." + cons.Stream + "." + cons.Name
			c.refused(t, "deletes consumer "+cons.Name, subj, func(ctx context.Context) error {
				return c.js.DeleteConsumer(ctx, cons.Stream, cons.Name)
			})
			if other.Name != s.Name {
				c.refused(t, "pulls from "+other.Name+"'s consumer "+cons.Name,
					"$JS.API.CONSUMER.MSG.NEXT."+cons.Stream+"."+cons.Name, pull(c, cons.Stream, cons.Name))
			}
		}
	}
	// Consumers are the admin's: not even a stage's own may be created or changed by it.
	own := s.Uses.Consumers[0]
	c.refused(t, "updates its own consumer", "$JS.API.CONSUMER.CREATE."+own.Stream+"."+own.Name,
		func(ctx context.Context) error {
			_, err := c.js.CreateOrUpdateConsumer(ctx, own.Stream, jetstream.ConsumerConfig{Durable: own.Name,
				FilterSubjects: own.Filters, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1})
			return err
		})
}
