package tracing

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// otlpExporter sends spans to a collector as OTLP/HTTP protobuf: one ExportTraceServiceRequest per
// ExportSpans, encoded straight from the spans into a buffer it reuses (otlpenc.go).
//
// It replaces the official exporter (otlptracehttp), which builds the generated proto structs of every
// span and then marshals them: eighteen allocations per span, and 3.4 times this exporter's time for a
// batch of 512 (BenchmarkExport), on a broker that makes a span per relayed statement. What it sends is checked, field by field, against the official
// exporter's output (TestEncodingMatchesTheOfficialExporter).
type otlpExporter struct {
	url     string
	client  *http.Client
	timeout time.Duration // bounds one ExportSpans, its retries included

	mu  sync.Mutex // one export at a time: they share enc
	enc encoder

	stopped atomic.Bool
}

var _ sdktrace.SpanExporter = (*otlpExporter)(nil)

// Bounds of the exporter's waits and reads.
const (
	maxResponseBody = 64 << 10 // of a collector's answer, read at most
	retryFirst      = 100 * time.Millisecond
	retryMax        = 5 * time.Second
	// maxKeptBuffer is the largest encoding buffer kept for the next export: a batch of unusually
	// large spans does not hold its memory for the broker's life.
	maxKeptBuffer = 4 << 20
)

// errExporterShutdown is ExportSpans' error after Shutdown.
var errExporterShutdown = errors.New("tracing: the OTLP exporter is shut down")

// newOTLPExporter returns an exporter posting to http(s)://endpoint/v1/traces: plain HTTP when
// insecure, else HTTPS verified by tlsConf (nil: the system's roots). timeout bounds each export.
func newOTLPExporter(endpoint string, insecure bool, tlsConf *tls.Config, timeout time.Duration) (*otlpExporter, error) {
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return nil, fmt.Errorf("tracing: the OTLP endpoint %q is not host:port: %w", endpoint, err)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("tracing: the export timeout %v is not positive", timeout)
	}
	scheme := "https"
	if insecure {
		scheme = "http"
	}
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	} else {
		tlsConf = tlsConf.Clone()
	}
	if tlsConf.MinVersion < tls.VersionTLS12 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4,
		MaxIdleConnsPerHost:   2, // one export at a time, and a spare
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	client := &http.Client{
		Transport: transport,
		// A collector that redirects is misconfigured: its answer is reported, the spans not re-sent.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &otlpExporter{url: scheme + "://" + endpoint + "/v1/traces", client: client, timeout: timeout}, nil
}

// ExportSpans sends spans to the collector in one request, retrying while the collector says it is
// busy (429, 502, 503, 504) and ctx and the export timeout allow. Spans the collector accepted but
// rejected in part are reported to otel.Handle, not as an error.
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	data := make([]spanData, len(spans))
	for i, s := range spans {
		if s != nil {
			data[i] = s
		}
	}
	return e.exportData(ctx, data, nil)
}

// keepsNoSpans: once exportData returns, the encoder has forgotten the spans and chunks
// (encoder.reset).
func (*otlpExporter) keepsNoSpans() {}

// exportData is ExportSpans of what the batcher queues: the SDK's spans, and the broker's leaf
// spans in the chunks their spools encoded. Nil spans are skipped.
func (e *otlpExporter) exportData(ctx context.Context, spans []spanData, chunks []chunk) error {
	if e.stopped.Load() {
		return errExporterShutdown
	}
	if len(spans) == 0 && len(chunks) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	body, n := e.enc.request(spans, chunks)
	defer e.enc.reset(maxKeptBuffer)
	if n == 0 {
		return nil
	}
	return e.post(ctx, body, n)
}

// post sends body (n spans), retrying as ExportSpans says.
func (e *otlpExporter) post(ctx context.Context, body []byte, n int) error {
	backoff := retryFirst
	for {
		status, retryAfter, err := e.send(ctx, body)
		if err != nil {
			return fmt.Errorf("tracing: exporting %d spans to %s: %w", n, e.url, err)
		}
		switch {
		case status >= 200 && status <= 299:
			return nil
		case status == http.StatusTooManyRequests || status == http.StatusBadGateway ||
			status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		default:
			return fmt.Errorf("tracing: the collector at %s refused %d spans: %d %s", e.url, n, status, http.StatusText(status))
		}
		wait := backoff
		if retryAfter >= 0 {
			wait = retryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("tracing: the collector at %s answered %d %s to %d spans, and waiting %v to retry would pass the export's deadline",
				e.url, status, http.StatusText(status), n, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("tracing: exporting %d spans to %s, the collector answered %d %s and the retry was cut short: %w",
				n, e.url, status, http.StatusText(status), ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, retryMax)
	}
}

// send posts body once and returns the collector's status and its Retry-After in seconds (-1 when
// absent or not a number of seconds). A 2xx answer's partial success is reported to otel.Handle.
func (e *otlpExporter) send(ctx context.Context, body []byte) (status int, retryAfter time.Duration, err error) {
	rd := &bodyReader{b: body}
	defer rd.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, rd)
	if err != nil {
		return 0, 0, err
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "svidbroker OTLP/HTTP exporter")
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	answer, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	retryAfter = -1
	if s, err := strconv.ParseUint(resp.Header.Get("Retry-After"), 10, 32); err == nil {
		retryAfter = time.Duration(s) * time.Second
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		e.reportPartialSuccess(resp.Header.Get("Content-Type"), answer, readErr)
	}
	return resp.StatusCode, retryAfter, nil
}

// reportPartialSuccess reports to otel.Handle the spans a collector's 2xx answer says it rejected,
// or a warning it gave.
func (e *otlpExporter) reportPartialSuccess(contentType string, answer []byte, readErr error) {
	if readErr != nil {
		otel.Handle(fmt.Errorf("tracing: the collector at %s accepted the spans; reading its answer: %w", e.url, readErr))
		return
	}
	if len(answer) == 0 {
		return
	}
	if mt, _, err := mime.ParseMediaType(contentType); contentType != "" && (err != nil || mt != "application/x-protobuf") {
		return // not an OTLP protobuf answer: nothing to read in it
	}
	rejected, msg, err := parsePartialSuccess(answer)
	switch {
	case err != nil:
		otel.Handle(fmt.Errorf("tracing: the collector at %s accepted the spans; its answer: %w", e.url, err))
	case rejected != 0 || msg != "":
		if len(msg) > 256 {
			msg = msg[:256] + "..."
		}
		otel.Handle(fmt.Errorf("tracing: the collector at %s rejected %d of the spans: %q", e.url, rejected, msg))
	}
}

// Shutdown stops the exporter: later exports fail. An export in flight finishes within its deadline.
func (e *otlpExporter) Shutdown(context.Context) error {
	e.stopped.Store(true)
	e.client.CloseIdleConnections()
	return nil
}

// bodyReader is a request's body over the encoder's buffer. The transport may still hold a request's
// body after the round trip returns; once closed, a bodyReader reads no more, so the buffer can be
// reused for the next export.
type bodyReader struct {
	mu sync.Mutex
	b  []byte
}

func (r *bodyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// WriteTo writes what is left to w, a chunk at a time, each under the lock Close takes: the
// transport's socket copies from it directly (io.Copy of a plain Reader allocates a 32 KiB buffer
// per export). Close waits for the chunk being written at most, and that write ends by the export's
// deadline, when the transport closes the connection.
func (r *bodyReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		r.mu.Lock()
		if len(r.b) == 0 {
			r.mu.Unlock()
			return total, nil
		}
		n, err := w.Write(r.b[:min(len(r.b), bodyChunk)])
		r.b = r.b[n:]
		r.mu.Unlock()
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// bodyChunk is what bodyReader.WriteTo writes at a time.
const bodyChunk = 32 << 10

func (r *bodyReader) Close() error {
	r.mu.Lock()
	r.b = nil
	r.mu.Unlock()
	return nil
}
