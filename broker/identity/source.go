package identity

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// DefaultSourceTimeout bounds how long the broker waits for its first SVID at start.
const DefaultSourceTimeout = 30 * time.Second

// NewX509Source connects to the Workload API at addr (such as "unix:///run/spire/agent.sock") and waits
// until SPIRE has issued the broker's X.509-SVID, or timeout passes. The source keeps watching for
// rotations until it is closed.
func NewX509Source(ctx context.Context, addr string, timeout time.Duration) (*workloadapi.X509Source, error) {
	if timeout <= 0 {
		timeout = DefaultSourceTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		return nil, fmt.Errorf("identity: no X.509-SVID from the Workload API at %s within %s (is the SPIRE agent running, and is there a registration entry for this process?): %w", addr, timeout, err)
	}
	return src, nil
}
