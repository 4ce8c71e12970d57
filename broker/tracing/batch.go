package tracing

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is a span processor that queues ended, sampled spans, and the leaf spans that spools
// encoded (chunk), and hands them to an exporter in batches, from one goroutine of its own: when a
// batch is full, every interval, and on ForceFlush and Shutdown, which first collect what the spools
// hold.
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
	// recycle: exp keeps nothing of a chunk once its export returns (recycler), so the chunks'
	// buffers go back to the spools (spares).
	recycle bool

	mu      sync.Mutex
	queue   []spanData // SDK spans (ReadOnlySpan)
	chunks  []chunk    // leaf spans, encoded by their spools (Spool)
	queued  int        // spans in queue and chunks
	pending []*Spool   // spools holding spans: the interval, ForceFlush and Shutdown collect them
	spares  [][]byte   // exported chunks' buffers, for the spools' next
	stopped bool

	kick    chan struct{}   // cap 1: a batch is full
	flushes chan chan error // ForceFlush's requests, answered when what was queued before is exported
	stop    chan struct{}
	done    chan struct{}

	dropped  atomic.Int64
	exported atomic.Int64
	failed   atomic.Int64 // exports that returned an error
}

// dataExporter is an exporter of the spans the batcher queues as they are, leaf spans' chunks
// included.
type dataExporter interface {
	exportData(ctx context.Context, spans []spanData, chunks []chunk) error
}

// recycler is an exporter that keeps nothing of a chunk once exportData returns, having written it:
// its buffer can be reused.
type recycler interface {
	keepsNoSpans()
}

// Defaults of the batcher, the SDK's batch processor's own.
const (
	batchSize     = 512
	batchMaxQueue = 2048
	batchInterval = 5 * time.Second
	// maxSpares bounds the chunk buffers kept for reuse, and maxSpareBytes each one's capacity.
	maxSpares     = batchMaxQueue / spoolSpans
	maxSpareBytes = 2 * spoolBytes
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

// enqueue queues s, an ended and sampled SDK span, or drops it when maxQueue spans are waiting or
// the batcher is shut down.
func (b *batcher) enqueue(s spanData) {
	b.mu.Lock()
	if b.stopped || b.queued >= b.maxQueue {
		b.mu.Unlock()
		b.dropped.Add(1)
		return
	}
	b.queue = append(b.queue, s)
	b.queued++
	full := b.queued == b.batch
	b.mu.Unlock()
	if full {
		b.kickRun()
	}
}

// kickRun wakes the export goroutine: a batch is full.
func (b *batcher) kickRun() {
	select {
	case b.kick <- struct{}{}:
	default: // already kicked
	}
}

// handOver queues a copy of buf, n leaf spans of the resource res that a spool encoded, or drops
// them when they would take the queue beyond maxQueue or the batcher is shut down (unless final: its
// last collection). The copy goes into an exported chunk's buffer when one is spare. The spool keeps
// buf and encodes its next spans into it: a buffer the spool writes again and again stays in the
// cache of the core that ends its spans, where a spare, last read by the export on another core and
// long since evicted, missed the cache at each line a span's encoding reached, and the spool's
// unlock waited for those writes, span after span. The copy is one run of sequential writes per
// spoolSpans spans, which the processor streams.
func (b *batcher) handOver(buf []byte, n int, res *resource.Resource, final bool) {
	b.mu.Lock()
	if (b.stopped && !final) || b.queued+n > b.maxQueue {
		b.mu.Unlock()
		b.dropped.Add(int64(n))
		return
	}
	var c []byte
	if k := len(b.spares); k > 0 {
		c, b.spares[k-1] = b.spares[k-1], nil
		b.spares = b.spares[:k-1]
	}
	b.chunks = append(b.chunks, chunk{b: append(c, buf...), n: n, res: res})
	before := b.queued
	b.queued += n
	full := before < b.batch && b.queued >= b.batch
	b.mu.Unlock()
	if full {
		b.kickRun()
	}
}

// list has the batcher collect p at its next interval (Spool.collect); false when it is shut down.
func (b *batcher) list(p *Spool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return false
	}
	b.pending = append(b.pending, p)
	return true
}

// collect takes what the spools hold (final: the batcher is shut down, and takes it all the same).
func (b *batcher) collect(final bool) {
	b.mu.Lock()
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, p := range pending {
		p.collect(final)
	}
}

// run exports what is queued whenever a batch fills, the interval passes, or a flush is asked for,
// until Shutdown. The interval, a flush and Shutdown first collect what the spools hold.
func (b *batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	var spare backlog
	for {
		select {
		case <-b.stop:
			b.collect(true)
			spare = b.exportQueued(spare)
			return
		case reply := <-b.flushes:
			b.collect(false)
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
			b.collect(false)
			spare = b.exportQueued(spare)
		}
	}
}

// backlog is what the batcher has queued: SDK spans and leaf spans' chunks.
type backlog struct {
	spans  []spanData
	chunks []chunk
}

// exportQueued takes the queue, leaving spare (emptied) in its place, and exports it in batches of
// at most b.batch spans (a chunk is not split: a batch holds at least one); it returns the taken
// queue, emptied, to be the next spare, so that steady traffic allocates no queue.
func (b *batcher) exportQueued(spare backlog) backlog {
	b.mu.Lock()
	taken := backlog{spans: b.queue, chunks: b.chunks}
	if spare.spans == nil {
		spare.spans = make([]spanData, 0, b.batch)
	}
	b.queue, b.chunks, b.queued = spare.spans[:0], spare.chunks[:0], 0
	b.mu.Unlock()
	spans, chunks := taken.spans, taken.chunks
	for len(spans) > 0 || len(chunks) > 0 {
		ns := min(len(spans), b.batch)
		nc, inChunks := 0, 0
		for nc < len(chunks) && (ns+inChunks+chunks[nc].n <= b.batch || ns+nc == 0) {
			inChunks += chunks[nc].n
			nc++
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		if n, err := b.export(ctx, spans[:ns], chunks[:nc], inChunks); err != nil {
			b.failed.Add(1)
		} else {
			b.exported.Add(int64(n))
		}
		cancel()
		if b.recycle {
			b.keepSpares(chunks[:nc])
		}
		spans, chunks = spans[ns:], chunks[nc:]
	}
	clear(taken.spans) // the spans are the collector's now: let them be collected
	clear(taken.chunks)
	return backlog{spans: taken.spans[:0], chunks: taken.chunks[:0]}
}

// keepSpares keeps the buffers of exported chunks for the spools to encode into next, as many as
// maxSpares, each up to maxSpareBytes.
func (b *batcher) keepSpares(chunks []chunk) {
	b.mu.Lock()
	for _, c := range chunks {
		if len(b.spares) < maxSpares && cap(c.b) <= maxSpareBytes {
			b.spares = append(b.spares, c.b[:0])
		}
	}
	b.mu.Unlock()
}

// export hands spans and chunks (holding inChunks leaf spans) to the exporter, and returns how many
// spans it exported: as they are to the broker's own, the SDK's spans alone to any other (which
// never gets leaf spans from New's Tracing, only from a test's: they are dropped).
func (b *batcher) export(ctx context.Context, spans []spanData, chunks []chunk, inChunks int) (int, error) {
	if b.direct != nil {
		return len(spans) + inChunks, b.direct.exportData(ctx, spans, chunks)
	}
	b.dropped.Add(int64(inChunks))
	ro := make([]sdktrace.ReadOnlySpan, 0, len(spans))
	for _, s := range spans {
		if s, ok := s.(sdktrace.ReadOnlySpan); ok {
			ro = append(ro, s)
		}
	}
	return len(ro), b.exp.ExportSpans(ctx, ro)
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
