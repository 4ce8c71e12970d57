package session

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// discard is an audit sink that keeps nothing.
type discard struct{}

func (discard) Write(audit.Record, bool) error { return nil }
func (discard) Flush() error                   { return nil }
func (discard) AppendAsync(audit.Record)       {}

// BenchmarkOpenStartEnd is the core's cost per session: identify, decide, record the start, arm the
// watches, end.
func BenchmarkOpenStartEnd(b *testing.B) {
	core, err := New(Config{Target: "shop", Audit: discard{}, Logger: slog.New(slog.DiscardHandler),
		Authorize: func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }})
	if err != nil {
		b.Fatal(err)
	}
	state := peerTLS(b, "spiffe://example.org/agent/a", time.Now().Add(time.Hour))
	for b.Loop() {
		s, err := core.Open(b.Context(), OpenRequest{TLS: state, Remote: remote})
		if err != nil {
			b.Fatal(err)
		}
		s.Start(b.Context())
		s.End(nil, time.Now())
	}
}
