package authz

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// ErrDenied is the sentinel for every denial; errors.As gives the *Denied with its decision.
var ErrDenied = errors.New("denied")

// Denied is a denial, with the decision behind it.
type Denied struct {
	Decision Decision
	What     string // "connect to target \"shop\"", ...
	// Permit, when set, says what a policy must permit for the request to pass: added to a default
	// deny's message.
	Permit string
}

func (d *Denied) Error() string {
	switch {
	case len(d.Decision.Errors) > 0:
		return fmt.Sprintf("%s denied: policy %s failed to evaluate (decision %s)", d.What, d.Decision.Errors[0].PolicyID, d.Decision.ID)
	case len(d.Decision.Reasons) > 0:
		return fmt.Sprintf("%s denied by policy %s (decision %s)", d.What, strings.Join(d.Decision.Reasons, ", "), d.Decision.ID)
	case d.Permit != "":
		return fmt.Sprintf("%s denied: no policy permits it; to allow it, permit %s (decision %s)", d.What, d.Permit, d.Decision.ID)
	default:
		return fmt.Sprintf("%s denied: no policy permits it (decision %s)", d.What, d.Decision.ID)
	}
}

func (d *Denied) Unwrap() error { return ErrDenied }

// Authorizer asks the engine about requests built from the catalog, the way the broker's data path
// and `svidbroker policy` both do.
type Authorizer struct {
	Engine  *Engine
	Catalog *Catalog
	static  types.EntityMap
	now     func() time.Time
	// workloads keeps the callers' entities (workload.go).
	workloads workloads
	// mcpArgs types context.args (mcpschema.go); mcpArgsErr is why the catalog's tools could not.
	mcpArgs    *mcpArgs
	mcpArgsErr error
}

// NewAuthorizer combines an engine with a catalog.
func NewAuthorizer(e *Engine, c *Catalog) *Authorizer {
	args, err := buildMCPArgs(catalogTools(c))
	return &Authorizer{Engine: e, Catalog: c, static: c.Entities(), now: time.Now, mcpArgs: args, mcpArgsErr: err}
}

// Connect describes a new, authenticated connection.
type Connect struct {
	Peer   identity.Peer
	Target string
	Source netip.Addr
	TLS    tls.ConnectionState
}

// Connect decides whether the peer may connect to the target. It returns the decision, and a *Denied
// error when it is not an allow.
func (a *Authorizer) Connect(c Connect) (Decision, error) {
	req := Request{
		Principal: WorkloadUID(c.Peer.ID),
		Action:    Action("connect"),
		Resource:  TargetUID(c.Target),
		Context:   ConnectionContext(a.now(), c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite)),
		Entities:  a.Entities(c.Peer),
	}
	d := a.Engine.Decide(req)
	if !d.Allow {
		return d, &Denied{Decision: d, What: fmt.Sprintf("connect to target %q", c.Target)}
	}
	return d, nil
}

// Entities returns the entities for a request by peer.
func (a *Authorizer) Entities(p identity.Peer) Entities {
	return Entities{Static: a.static, Workload: a.workloads.get(a.Catalog, p)}
}

// Static returns the catalog's entities.
func (a *Authorizer) Static() types.EntityMap { return a.static }
