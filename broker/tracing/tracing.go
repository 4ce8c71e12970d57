package tracing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Config configures the OTLP/HTTP exporter and what spans carry.
type Config struct {
	// Endpoint is the collector's OTLP/HTTP address, host:port (traces go to /v1/traces). Required.
	Endpoint string
	// Insecure sends spans over plain HTTP; otherwise HTTPS, verified against CAFile or the system's
	// roots.
	Insecure bool
	// CAFile, if set, is a PEM bundle the collector's certificate is verified against.
	CAFile string
	// SampleRatio is the share of new traces sampled, 0 to 1; a trace the caller sampled (its
	// traceparent's flag) is always followed. Nil: 1.
	SampleRatio *float64
	// StatementText puts a statement's normalized text (its constants replaced by placeholders) in
	// its decide span. Default false: spans name the statement's kind only.
	StatementText bool
	// Version is the broker's, as the resource's service.version.
	Version string
}

// Validate checks c.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Endpoint); err != nil {
		return fmt.Errorf("tracing: the OTLP endpoint %q is not host:port: %w", c.Endpoint, err)
	}
	if c.Insecure && c.CAFile != "" {
		return errors.New("tracing: a CA file verifies an HTTPS collector, and insecure sends over plain HTTP: choose one")
	}
	if r := c.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		return fmt.Errorf("tracing: the sample ratio %v is not between 0 and 1", *r)
	}
	return nil
}

// Tracing makes the broker's spans. A nil *Tracing makes none.
type Tracing struct {
	tracer        trace.Tracer
	provider      *sdktrace.TracerProvider // nil when made by WithProvider
	prop          propagation.TraceContext
	statementText bool
	leaves        *batcher           // where leaf spans go (Spool); nil when made by WithProvider
	res           *resource.Resource // the provider's, which leaf spans have too
}

// tracerName names the broker's tracer: its spans' instrumentation scope.
const tracerName = "github.com/svidbroker/svidbroker"

// exportTimeout bounds one export to the collector, and Shutdown's flush of the spans still queued.
const exportTimeout = 10 * time.Second

// New returns a Tracing exporting over OTLP/HTTP to cfg.Endpoint in batches. Nothing is sent
// until spans end; a collector that cannot be reached loses spans, never holds up a session.
func New(cfg Config) (*Tracing, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var tlsConf *tls.Config // nil: the system's roots
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tracing: the collector's CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tracing: the collector's CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsConf = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	exp, err := newOTLPExporter(cfg.Endpoint, cfg.Insecure, tlsConf, exportTimeout)
	if err != nil {
		return nil, err
	}
	return withExporter(exp, cfg), nil
}

// withExporter returns the Tracing New makes, exporting to exp.
func withExporter(exp sdktrace.SpanExporter, cfg Config) *Tracing {
	ratio := 1.0
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	res := resource.NewSchemaless(semconv.ServiceName("svidbroker"), semconv.ServiceVersion(cfg.Version))
	// The provider merges the environment's resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME)
	// under res; leaf spans carry the same merge, so that they share the SDK spans' resource.
	leafRes := res
	if merged, err := resource.Merge(resource.Environment(), res); err == nil {
		leafRes = merged
	}
	b := newBatcher(exp, batchSize, batchMaxQueue, batchInterval, exportTimeout)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(b),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithIDGenerator(randomIDs{}),
		sdktrace.WithResource(res))
	t := WithProvider(tp, cfg.StatementText)
	t.provider, t.leaves, t.res = tp, b, leafRes
	return t
}

// WithProvider returns a Tracing whose spans tp makes (an SDK provider with the test's in-memory
// exporter, or one the embedding program configured). statementText is Config.StatementText.
func WithProvider(tp trace.TracerProvider, statementText bool) *Tracing {
	return &Tracing{tracer: tp.Tracer(tracerName), statementText: statementText}
}

// Shutdown exports the spans still queued, within ctx, and stops the exporter. A Tracing made by
// WithProvider leaves its provider to its owner.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// ExportStats says what the exporter of a Tracing made by New did with the spans that ended: spans
// exported, spans dropped (the queue was full, or tracing was shut down), and exports that failed.
// Zeros for a nil Tracing or one made by WithProvider.
func (t *Tracing) ExportStats() (exported, dropped, failed int64) {
	if t == nil || t.leaves == nil {
		return 0, 0, 0
	}
	b := t.leaves
	return b.exported.Load(), b.dropped.Load(), b.failed.Load()
}

// ForceFlush exports the spans that have ended, within ctx. A Tracing made by WithProvider leaves
// its provider to its owner.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// noSpan is the span of a nil Tracing: it records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// Start starts a span named name as a child of the span in ctx, if any.
func (t *Tracing) Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	return t.start(ctx, name, kind, attrs, spanKindOption(kind))
}

// start starts the span of Start and StartLinked with opts. The attributes are set on the span, not
// passed as a start option: an option is copied into the start configuration and again into the
// span, and an unsampled span wants neither copy.
func (t *Tracing) start(ctx context.Context, name string, kind trace.SpanKind, attrs []attribute.KeyValue, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, name, opts...)
	if len(attrs) > 0 && span.IsRecording() {
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// spanKindOption is kind's start option, made once (spanKinds); a kind it does not know is internal.
func spanKindOption(kind trace.SpanKind) trace.SpanStartOption {
	if int(kind) >= len(spanKinds) {
		kind = trace.SpanKindInternal
	}
	return spanKinds[kind]
}

// spanKinds are the start options of each span kind, made once.
var spanKinds = func() []trace.SpanStartOption {
	kinds := []trace.SpanKind{trace.SpanKindUnspecified, trace.SpanKindInternal, trace.SpanKindServer,
		trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindConsumer}
	opts := make([]trace.SpanStartOption, len(kinds))
	for _, k := range kinds {
		opts[k] = trace.WithSpanKind(k)
	}
	return opts
}()

// StartLinked starts a span named name as a child of the span in ctx, if any, linked to link (the
// session an HTTP request belongs to, whose span may live in another trace).
func (t *Tracing) StartLinked(ctx context.Context, name string, kind trace.SpanKind, link trace.SpanContext, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	if !link.IsValid() {
		return t.start(ctx, name, kind, attrs, spanKindOption(kind))
	}
	return t.start(ctx, name, kind, attrs, spanKindOption(kind), trace.WithLinks(trace.Link{SpanContext: link}))
}

// On says whether spans are made: an engine builds costly attributes only then.
func (t *Tracing) On() bool { return t != nil }

// StatementText says whether spans may carry a statement's normalized text.
func (t *Tracing) StatementText() bool { return t != nil && t.statementText }

// Extract returns ctx with the W3C trace context of an HTTP caller's headers (traceparent,
// tracestate), when they hold a valid one: the spans started from it continue the caller's trace.
func (t *Tracing) Extract(ctx context.Context, h http.Header) context.Context {
	if t == nil {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject sets h's traceparent (and tracestate) to the span in ctx, replacing what the caller sent:
// the upstream's spans are children of the broker's. Without a span in ctx it removes them, so
// no trace context the broker did not check passes through.
func (t *Tracing) Inject(ctx context.Context, h http.Header) {
	if t == nil {
		return
	}
	h.Del("Traceparent")
	h.Del("Tracestate")
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// Fail marks span failed with a reason that must quote nothing protected (the refusal's kind).
func Fail(span trace.Span, reason string) {
	span.SetStatus(codes.Error, reason)
}
