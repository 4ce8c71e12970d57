package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/tracing"
)

// tracingShutdownGrace bounds the export of the spans still queued when the broker stops.
const tracingShutdownGrace = 5 * time.Second

// newTracing starts exporting spans when the configuration has a tracing block; otherwise tracing is
// off (nil). stop flushes what is queued, once the sessions have ended.
func newTracing(ctx context.Context, cfg *config.Config, log *slog.Logger) (t *tracing.Tracing, stop func(), err error) {
	if cfg.Tracing == nil {
		return nil, func() {}, nil
	}
	t, err = tracing.New(cfg.Tracing.TracingConfig(serviceVersion()))
	if err != nil {
		return nil, nil, err
	}
	log.InfoContext(ctx, "tracing on", "otlp_endpoint", cfg.Tracing.OTLPEndpoint, "statement_text", cfg.Tracing.StatementText)
	return t, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingShutdownGrace)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			log.WarnContext(ctx, "spans not exported at shutdown", "error", err)
		}
	}, nil
}

// serviceVersion is the broker's version as spans' resource names it (service.version).
func serviceVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}
