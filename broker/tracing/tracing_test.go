package tracing_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/tracing"
)

// collector is an OTLP/HTTP endpoint that counts the trace exports it receives.
type collector struct {
	mu      sync.Mutex
	exports int
	paths   []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.exports++
	c.paths = append(c.paths, r.Method+" "+r.URL.Path)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (c *collector) seen() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exports, append([]string(nil), c.paths...)
}

// TestExportsToTheCollector: spans reach the collector's /v1/traces by Shutdown, over plain HTTP
// with insecure and over HTTPS verified against the CA file.
func TestExportsToTheCollector(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "insecure", true: "ca_file"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			c := &collector{}
			srv := httptest.NewUnstartedServer(c)
			cfg := tracing.Config{Insecure: !tlsOn}
			if tlsOn {
				srv.StartTLS()
				cfg.CAFile = filepath.Join(t.TempDir(), "ca.pem")
				pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
				if err := os.WriteFile(cfg.CAFile, pemBytes, 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)
			cfg.Endpoint = srv.Listener.Addr().String()
			tr, err := tracing.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, span := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
			span.End()
			if err := tr.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if n, paths := c.seen(); n == 0 || paths[0] != "POST /v1/traces" {
				t.Fatalf("collector got %d exports: %q", n, paths)
			}
		})
	}
}

func TestConfigRefusals(t *testing.T) {
	ratio := 2.0
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		cfg  tracing.Config
		says string
	}{
		"no endpoint":                 {tracing.Config{}, "not host:port"},
		"a URL":                       {tracing.Config{Endpoint: "https://collector:4318/v1/traces"}, "not host:port"},
		"insecure with a CA":          {tracing.Config{Endpoint: "collector:4318", Insecure: true, CAFile: bad}, "choose one"},
		"a ratio above 1":             {tracing.Config{Endpoint: "collector:4318", SampleRatio: &ratio}, "between 0 and 1"},
		"a CA file of no certificate": {tracing.Config{Endpoint: "collector:4318", CAFile: bad}, "holds no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tracing.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("New: %v, want an error saying %q", err, c.says)
			}
		})
	}
}

// TestNilIsOff: a nil Tracing makes no spans, passes no trace context and changes no header.
func TestNilIsOff(t *testing.T) {
	var tr *tracing.Tracing
	h := http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	ctx := tr.Extract(context.Background(), h)
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("a nil Tracing extracted a trace context")
	}
	_, span := tr.Start(ctx, "x", trace.SpanKindInternal)
	if span.IsRecording() || tr.On() || tr.StatementText() || tr.Shutdown(ctx) != nil {
		t.Error("a nil Tracing is not off")
	}
	tr.Inject(ctx, h)
	if h.Get("Traceparent") != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Errorf("a nil Tracing changed traceparent: %q", h.Get("Traceparent"))
	}
}
