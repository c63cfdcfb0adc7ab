// Package services lists marketpipe's pipeline services: each one's name, summary, own settings
// (pkg/config tags) and wiring. Their mains, -h, `marketpipe dev`, README's configuration table
// and the deployment checks are derived from this list.
package services

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/services/collector"
	"github.com/marketpipe/marketpipe/services/loader"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/transformer"
)

// Service is one pipeline service.
type Service struct {
	Name, Summary string
	// Settings is the service's own settings struct (nil: none); Build reads it from env.Lookup.
	Settings any
	Build    service.Build
	// Uses is what the service does on NATS: the consumers the admin declares for it, and its
	// identity's permissions (pkg/auth).
	Uses auth.Uses
}

// All are the pipeline's services, in the order of the pipeline.
var All = []Service{
	{Name: requester.Name, Summary: requester.Summary, Build: requester.Build, Uses: requester.Uses},
	{Name: poller.Name, Summary: poller.Summary, Settings: poller.Settings{}, Build: poller.Build, Uses: poller.Uses},
	{Name: collector.Name, Summary: collector.Summary, Settings: collector.Settings{}, Build: collector.Build, Uses: collector.Uses},
	{Name: transformer.Name, Summary: transformer.Summary, Settings: transformer.Settings{}, Build: transformer.Build, Uses: transformer.Uses},
	{Name: loader.Name, Summary: loader.Summary, Settings: loader.Settings{}, Build: loader.Build, Uses: loader.Uses},
}

// Operator is what the CLI does on NATS with the operator's credentials (`submit`, `status`,
// `replay`, `dlq`, `schedule`, `cancel`, `backfill`): it publishes job events (a submit, a
// replay from any stage, a redriven job event, a cancel, a backfill's windows) and schedules
// (their message schedules, a manual firing, a removal), reads the jobs, dead-letter and
// schedules streams, the attempts bucket and the coverage (an incremental job's dry run), keeps the schedules, the submitted files, the ends
// of runs and the backfills, and stores long securities lists. Redriving a dead-lettered row batch or chunk task needs the admin's.
var Operator = auth.Uses{
	Publishes: []string{events.JobsSubjects, events.ScheduleSubjects},
	Reads:     []string{events.JobsStream, events.DLQStream, events.SchedulesStream},
	KVRead:    []string{attempts.Bucket, events.CoverageBucket},
	KVWrite:   []string{events.SchedulesBucket, events.SubmitsBucket, events.EndsBucket, events.BackfillsBucket},
	ObjWrite:  []string{events.SpecsBucket},
}

// Identities are a deployment's NATS users: one per service, the operator's and the admin's.
// `marketpipe auth init` writes their credentials.
func Identities() []auth.Identity {
	ids := make([]auth.Identity, 0, len(All)+2)
	for _, s := range All {
		ids = append(ids, auth.Identity{Name: s.Name, Uses: s.Uses})
	}
	return append(ids, auth.Identity{Name: auth.OperatorName, Uses: Operator}, auth.Identity{Name: auth.AdminName, Admin: true})
}

// Setup declares, with the admin's rights, the pipeline's streams, buckets and object stores
// (natsx.Setup) and every service's durable consumers (stage.Declare), as `marketpipe migrate`
// and `marketpipe dev` do before the services start. ackWait, when set, replaces each stage's
// AckWait (ACK_WAIT).
func Setup(ctx context.Context, js jetstream.JetStream, r natsx.Retention, ackWait time.Duration) (*natsx.Streams, error) {
	st, err := natsx.Setup(ctx, js, r)
	if err != nil {
		return nil, err
	}
	for _, s := range All {
		for _, c := range s.Uses.Consumers {
			if err := stage.Declare(ctx, js, c, ackWait); err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name, err)
			}
		}
	}
	return st, nil
}

// Own returns the service's own settings for service.Main, Run, Vars and CheckSettings.
func (s Service) Own() []any {
	if s.Settings == nil {
		return nil
	}
	return []any{s.Settings}
}

// Vars lists every variable the service reads.
func (s Service) Vars() []config.Var { return service.Vars(s.Own()...) }

// Main is the main of the service called name.
func Main(name string) {
	for _, s := range All {
		if s.Name == name {
			service.Main(s.Name, s.Summary, s.Build, s.Own()...)
			return
		}
	}
	fmt.Fprintf(os.Stderr, "no service %q\n", name)
	os.Exit(2)
}

// Table is README's configuration table: the variables every service reads, then each
// service's own, each once.
func Table() string {
	vars := service.Vars()
	for _, s := range All {
		if s.Settings != nil {
			vars = append(vars, config.Prefixed(s.Name, config.Vars(s.Settings))...)
		}
	}
	return config.Table(vars)
}
