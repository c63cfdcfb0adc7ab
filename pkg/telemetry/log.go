// Package telemetry sets up what every process reports about itself: slog logs that carry the
// job and trace of the work they describe, and the OpenTelemetry tracer provider chosen by the
// standard OTEL_* variables.
package telemetry

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

type ctxKey int

const jobKey ctxKey = iota

// WithJobID returns ctx carrying the job id that log lines made under it will show.
func WithJobID(ctx context.Context, jobID string) context.Context {
	if jobID == "" {
		return ctx
	}
	return context.WithValue(ctx, jobKey, jobID)
}

// JobID returns the job id carried by ctx, if any.
func JobID(ctx context.Context) string {
	s, _ := ctx.Value(jobKey).(string)
	return s
}

// NewLogger returns a logger writing format ("json" or "text") at level to w; every record made
// with a context gets job_id, trace_id and span_id from it.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(contextHandler{h})
}

// Discard is a logger that writes nothing, the default where none is given.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := JobID(ctx); id != "" {
		r.AddAttrs(slog.String("job_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(as)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
