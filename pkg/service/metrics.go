package service

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Register adds a stage's own metric c to the Env's registry and returns it; if a metric of the
// same name is there already (a process that builds the stage twice), that one is returned, so
// both count into one series. Each stage declares its metrics beside its code (its
// telemetry.go); the runtime's per-stage message metrics are stage.Metrics.
func Register[C prometheus.Collector](e *Env, c C) (C, error) {
	err := e.Registry.Register(c)
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		if existing, ok := dup.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("register metric: %w", err)
	}
	return c, nil
}

// Publisher returns a publisher whose every publish is a producer span of the Env's tracer
// provider, so the next stage's span descends from the publishing one.
func (e *Env) Publisher() *stage.Publisher {
	return stage.NewPublisher(e.JS, stage.PublishTracing(e.Tracing.Provider), stage.PublishSpanNames(events.SubjectKind))
}
