// Package tracing gives the broker's sessions and operations OpenTelemetry spans, exported over
// OTLP/HTTP to a collector (go.opentelemetry.io/otel), and carries W3C trace context between an HTTP
// caller, the broker and the upstream.
//
// Ended spans wait in a batcher (batch.go) and go to the collector 512 at a time, at least every 5
// seconds; when 2048 are waiting, further spans are dropped, never waited for. Ending an SDK span
// appends it under a mutex; the export goroutine wakes when a batch fills, not once per span as the
// SDK's batch processor's channel wakes it. A statement's relay to its backend, the span the broker
// makes most, is a leaf span (leaf.go): the broker's own record, started from its session's Spool,
// holding the session's shared attribute list, and sampled as the SDK samples a child: when its
// parent is. When it ends, the goroutine that ends it encodes it into the spool, as the SDK's spans
// are encoded (TestLeafSpanIsRecordedAsTheSDKRecordsIt compares the two); the spool hands its
// encoded spans to the batcher 32 at a time, swapping its buffer for an exported one, and the batcher
// collects what every spool holds at its interval, on ForceFlush and on Shutdown. A statement's span
// allocates nothing, and no memory is written for each span on one core and read on another: a
// span's start and end travel in the statement's queue item, which the session's two sides share
// anyway. Trace and span IDs come from the runtime's lock-free random source (ids.go). The exporter
// (otlp.go, otlpenc.go) is the package's own, not otlptracehttp: it POSTs each batch to
// http(s)://endpoint/v1/traces as one application/x-protobuf ExportTraceServiceRequest, written with
// protowire straight from the spans into a buffer it reuses, where the official exporter builds the
// generated proto structs of every span and marshals them (eighteen allocations per span; a batch
// of 512 took 3.4 times as long to export, in BenchmarkExport, on a broker that makes a span per
// statement). A spool encodes an attribute list its leaf spans share once, and a plain leaf span (one
// with that list and nothing else of its own) once per list and parent: the next is a copy with its
// span ID and times, fixed-width fields, patched in. Its requests are checked field by field against
// the official exporter's (TestEncodingMatchesTheOfficialExporter, over spans of every field and
// attribute type; otlptracehttp stays only as that test's oracle). A collector's 429, 502, 503 and
// 504 are retried with exponential backoff (100 ms doubling to 5 s, or its Retry-After) within the
// export's 10-second deadline; other answers fail the batch; spans a collector reports rejected in a
// partial success go to otel.Handle.
//
// A nil *Tracing is tracing off: every method is safe on it and costs nothing, so engines and the
// session core hold one without checking. What spans carry is bounded by the callers: targets,
// protocols, SPIFFE IDs, routes, policy IDs and outcomes; never a credential, a row or a field's
// value, and statement text only in its normalized form (constants replaced by placeholders), when
// Config.StatementText is set.
package tracing
