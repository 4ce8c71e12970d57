package tracing

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is a span processor that queues ended, sampled spans and hands them to an exporter in
// batches, from one goroutine of its own: when a batch is full, every interval, and on ForceFlush and
// Shutdown.
//
// It does what the SDK's batch span processor does, with one difference that the statement path
// pays for: ending a span appends it to a slice under a mutex, and wakes the export goroutine only
// when that append fills a batch. The SDK's processor sends every span over a channel to its
// goroutine, which wakes it (a scheduler round trip) once per span: on a broker relaying thousands of
// statements a second, on few cores, that was most of what a span cost the statement it timed.
//
// Spans beyond maxQueue waiting are dropped and counted (Tracing.ExportStats, metrics'
// svidbroker_trace_spans_dropped_total): a collector that cannot keep up
// loses spans, never holds up a session or grows the broker's memory without bound.
type batcher struct {
	exp      sdktrace.SpanExporter
	batch    int           // spans per export
	maxQueue int           // spans waiting at most
	interval time.Duration // the longest a span waits for its export
	timeout  time.Duration // bounds one export

	direct dataExporter // exp, when it takes the queue as it is (the broker's OTLP exporter)
	// recycle: exp keeps no span once its export returns (recycler), so the leaf spans it exported go
	// back to their pool (leafSpan.release).
	recycle bool

	mu      sync.Mutex
	queue   []spanData // SDK spans (ReadOnlySpan) and, with direct, leaf spans
	stopped bool

	kick    chan struct{}   // cap 1: a batch is full
	flushes chan chan error // ForceFlush's requests, answered when what was queued before is exported
	stop    chan struct{}
	done    chan struct{}

	dropped  atomic.Int64
	exported atomic.Int64
	failed   atomic.Int64 // exports that returned an error
}

// dataExporter is an exporter of the spans the batcher queues as they are, leaf spans included.
type dataExporter interface {
	exportData(ctx context.Context, spans []spanData) error
}

// recycler is an exporter that keeps no reference to a span once exportData returns, having written
// what it needed of each: the spans can be reused.
type recycler interface {
	keepsNoSpans()
}

// Defaults of the batcher, the SDK's batch processor's own.
const (
	batchSize     = 512
	batchMaxQueue = 2048
	batchInterval = 5 * time.Second
)

// newBatcher starts a batcher exporting to exp.
func newBatcher(exp sdktrace.SpanExporter, batch, maxQueue int, interval, timeout time.Duration) *batcher {
	b := &batcher{
		exp: exp, batch: batch, maxQueue: maxQueue, interval: interval, timeout: timeout,
		queue:   make([]spanData, 0, batch),
		kick:    make(chan struct{}, 1),
		flushes: make(chan chan error),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	b.direct, _ = exp.(dataExporter)
	_, b.recycle = exp.(recycler)
	b.recycle = b.recycle && b.direct != nil
	go b.run()
	return b
}

// OnStart does nothing: spans are queued when they end.
func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues s when it is sampled, or drops it when maxQueue spans are waiting.
func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.enqueue(s)
}

// enqueue queues s, an ended and sampled span, or drops it when maxQueue spans are waiting or the
// batcher is shut down.
func (b *batcher) enqueue(s spanData) {
	b.mu.Lock()
	if b.stopped || len(b.queue) >= b.maxQueue {
		b.mu.Unlock()
		b.dropped.Add(1)
		if l, ok := s.(*leafSpan); ok {
			l.release() // no one else has it
		}
		return
	}
	b.queue = append(b.queue, s)
	full := len(b.queue) == b.batch
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default: // already kicked
		}
	}
}

// run exports what is queued whenever a batch fills, the interval passes, or a flush is asked for,
// until Shutdown.
func (b *batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	var spare []spanData
	for {
		select {
		case <-b.stop:
			spare = b.exportQueued(spare)
			return
		case reply := <-b.flushes:
			before := b.failed.Load()
			spare = b.exportQueued(spare)
			var err error
			if b.failed.Load() != before {
				err = errors.New("tracing: an export to the collector failed")
			}
			reply <- err
		case <-b.kick:
			spare = b.exportQueued(spare)
		case <-t.C:
			spare = b.exportQueued(spare)
		}
	}
}

// exportQueued takes the queue, leaving spare (emptied) in its place, and exports it in batches; it
// returns the taken slice, emptied, to be the next spare, so that steady traffic allocates no queue.
func (b *batcher) exportQueued(spare []spanData) []spanData {
	b.mu.Lock()
	taken := b.queue
	if spare == nil {
		spare = make([]spanData, 0, b.batch)
	}
	b.queue = spare[:0]
	b.mu.Unlock()
	for rest := taken; len(rest) > 0; {
		n := min(len(rest), b.batch)
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		if err := b.export(ctx, rest[:n]); err != nil {
			b.failed.Add(1)
		} else {
			b.exported.Add(int64(n))
		}
		cancel()
		if b.recycle {
			for _, s := range rest[:n] {
				if l, ok := s.(*leafSpan); ok {
					l.release()
				}
			}
		}
		rest = rest[n:]
	}
	clear(taken) // the spans are the collector's now: let them be collected
	return taken[:0]
}

// export hands spans to the exporter: as they are to the broker's own, as the SDK's ReadOnlySpans to
// any other (which never gets leaf spans: a Tracing makes them only with its own exporter).
func (b *batcher) export(ctx context.Context, spans []spanData) error {
	if b.direct != nil {
		return b.direct.exportData(ctx, spans)
	}
	ro := make([]sdktrace.ReadOnlySpan, 0, len(spans))
	for _, s := range spans {
		switch s := s.(type) {
		case sdktrace.ReadOnlySpan:
			ro = append(ro, s)
		case *leafSpan:
			b.dropped.Add(1)
			s.release() // no one else has it
		}
	}
	return b.exp.ExportSpans(ctx, ro)
}

// ForceFlush exports every span queued before it, within ctx.
func (b *batcher) ForceFlush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case b.flushes <- reply:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, within ctx, and shuts the exporter down; spans ending after it
// are dropped.
func (b *batcher) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil
	}
	b.stopped = true
	b.mu.Unlock()
	close(b.stop)
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.exp.Shutdown(ctx)
}

// NewBatcher returns the span processor New's provider has, batching the spans that end to exp: for
// a program (or a test) that makes its own provider with another exporter.
func NewBatcher(exp sdktrace.SpanExporter) sdktrace.SpanProcessor {
	return newBatcher(exp, batchSize, batchMaxQueue, batchInterval, exportTimeout)
}
