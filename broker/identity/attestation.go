package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/svidbroker/svidbroker/broker/metrics"
)

// Attestation is what SPIRE attested about a workload: its registration entry and its node. It is
// not changed once looked up (a new lookup makes a new one): authz keeps the caller's entity by it.
type Attestation struct {
	// EntryIDs are the registration entries that issue the workload's SPIFFE ID.
	EntryIDs []string
	// Selectors are the entry's selectors, as "type:value". When several entries issue the same ID,
	// only the selectors they all share are kept: the broker cannot tell which one matched.
	Selectors []string
	// ParentID is the entry's parent (the node's agent, or a node alias). Zero when the entries
	// disagree.
	ParentID spiffeid.ID
	// Hint is the entry's hint, if any, when the entries agree.
	Hint string
	// NodeAttestationType is how the node attested (for example "join_token", "k8s_psat"), when the
	// parent is an agent.
	NodeAttestationType string
	// NodeSelectors are the node's selectors, from its attestation or from the node alias entry.
	NodeSelectors []string
}

// Errors of attestation lookups; each means the broker must not grant new access.
var (
	ErrNotRegistered = errors.New("identity: no registration entry issues this SPIFFE ID")
	ErrNodeBanned    = errors.New("identity: the workload's node is banned")
)

// AttestationConfig configures an Attestations resolver.
type AttestationConfig struct {
	// Address is the SPIRE server API: "unix:///path/api.sock" for the local admin socket, or
	// "host:port" for the server's TCP endpoint, reached with mTLS using SVIDs (the broker's registration
	// entry must then be an admin entry).
	Address string
	// ServerID is the SPIRE server's SPIFFE ID, verified on TCP. Default spiffe://<td>/spire/server.
	ServerID spiffeid.ID
	// Source supplies the broker's SVID and bundles for TCP.
	Source *workloadapi.X509Source
	// TTL is how long a lookup is reused. Default 30s. After it, the broker asks SPIRE again, and a
	// SPIRE that cannot be reached fails the request.
	TTL time.Duration
	// MaxEntries bounds the cache. Default 10000.
	MaxEntries int
	// Timeout bounds one lookup. Default 5s.
	Timeout time.Duration
	// Metrics, if set, times each lookup that asks SPIRE (not those the cache answers).
	Metrics *metrics.Metrics
}

// Attestations resolves and caches what SPIRE attested about workloads.
type Attestations struct {
	cfg     AttestationConfig
	conn    *grpc.ClientConn
	entries entryv1.EntryClient
	agents  agentv1.AgentClient
	now     func() time.Time

	mu    sync.Mutex
	cache map[spiffeid.ID]cachedAttestation
}

type cachedAttestation struct {
	att     *Attestation
	fetched time.Time
}

// NewAttestations connects (lazily) to the SPIRE server API.
func NewAttestations(cfg AttestationConfig, td spiffeid.TrustDomain) (*Attestations, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	var creds grpc.DialOption
	target := cfg.Address
	if strings.HasPrefix(target, "unix://") {
		creds = grpc.WithTransportCredentials(insecure.NewCredentials())
	} else {
		if cfg.Source == nil {
			return nil, errors.New("identity: the SPIRE server's TCP API needs the broker's X.509 source")
		}
		if cfg.ServerID.IsZero() {
			cfg.ServerID = spiffeid.RequireFromSegments(td, "spire", "server")
		}
		creds = grpc.WithTransportCredentials(grpccredentials.MTLSClientCredentials(cfg.Source, cfg.Source, tlsconfig.AuthorizeID(cfg.ServerID)))
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target, creds)
	if err != nil {
		return nil, fmt.Errorf("identity: SPIRE server API %s: %w", cfg.Address, err)
	}
	return &Attestations{cfg: cfg, conn: conn, entries: entryv1.NewEntryClient(conn), agents: agentv1.NewAgentClient(conn),
		now: time.Now, cache: map[spiffeid.ID]cachedAttestation{}}, nil
}

// Close closes the connection to SPIRE.
func (a *Attestations) Close() error { return a.conn.Close() }

// Lookup returns what SPIRE attested about id, from the cache if it is younger than the TTL.
func (a *Attestations) Lookup(ctx context.Context, id spiffeid.ID) (*Attestation, error) {
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[id]
	a.mu.Unlock()
	if ok && now.Sub(c.fetched) < a.cfg.TTL {
		return c.att, nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	start := time.Now()
	att, err := a.fetch(ctx, id)
	a.cfg.Metrics.SPIRELookup(time.Since(start), err)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.cfg.MaxEntries {
		a.evictExpiredOrOldest(now)
	}
	a.cache[id] = cachedAttestation{att: att, fetched: now}
	return att, nil
}

func (a *Attestations) evictExpiredOrOldest(now time.Time) {
	var oldest spiffeid.ID
	var oldestAt time.Time
	for id, c := range a.cache {
		if now.Sub(c.fetched) >= a.cfg.TTL {
			delete(a.cache, id)
			continue
		}
		if oldest.IsZero() || c.fetched.Before(oldestAt) {
			oldest, oldestAt = id, c.fetched
		}
	}
	if len(a.cache) >= a.cfg.MaxEntries && !oldest.IsZero() {
		delete(a.cache, oldest)
	}
}

func (a *Attestations) fetch(ctx context.Context, id spiffeid.ID) (*Attestation, error) {
	entries, err := a.listEntries(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotRegistered, id)
	}
	att := &Attestation{}
	var parents []string
	for i, e := range entries {
		att.EntryIDs = append(att.EntryIDs, e.Id)
		sels := selectorStrings(e.Selectors)
		if i == 0 {
			att.Selectors, att.Hint = sels, e.Hint
		} else {
			att.Selectors = slices.DeleteFunc(att.Selectors, func(s string) bool { return !slices.Contains(sels, s) })
			if e.Hint != att.Hint {
				att.Hint = ""
			}
		}
		parents = append(parents, spiffeIDString(e.ParentId))
	}
	slices.Sort(parents)
	if parents = slices.Compact(parents); len(parents) != 1 {
		return att, nil // several parents: no single node to describe
	}
	if att.ParentID, err = spiffeid.FromString(parents[0]); err != nil {
		return nil, fmt.Errorf("identity: entry parent %q: %w", parents[0], err)
	}
	agent, err := a.agents.GetAgent(ctx, &agentv1.GetAgentRequest{Id: spiffeIDProto(att.ParentID)})
	switch status.Code(err) {
	case codes.OK:
		if agent.Banned {
			return nil, fmt.Errorf("%w: %s", ErrNodeBanned, att.ParentID)
		}
		att.NodeAttestationType, att.NodeSelectors = agent.AttestationType, selectorStrings(agent.Selectors)
	case codes.NotFound:
		// The parent is a node alias: its own entry's selectors describe the nodes it covers.
		alias, err := a.listEntries(ctx, att.ParentID)
		if err != nil {
			return nil, err
		}
		for i, e := range alias {
			sels := selectorStrings(e.Selectors)
			if i == 0 {
				att.NodeSelectors = sels
			} else {
				att.NodeSelectors = slices.DeleteFunc(att.NodeSelectors, func(s string) bool { return !slices.Contains(sels, s) })
			}
		}
	default:
		return nil, fmt.Errorf("identity: SPIRE server: get agent %s: %w", att.ParentID, err)
	}
	return att, nil
}

func (a *Attestations) listEntries(ctx context.Context, id spiffeid.ID) ([]*types.Entry, error) {
	var out []*types.Entry
	req := &entryv1.ListEntriesRequest{Filter: &entryv1.ListEntriesRequest_Filter{BySpiffeId: spiffeIDProto(id)}, PageSize: 100}
	for pages := 0; pages < 100; pages++ {
		resp, err := a.entries.ListEntries(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("identity: SPIRE server unreachable or refused the entry lookup for %s: %w", id, err)
		}
		out = append(out, resp.Entries...)
		if resp.NextPageToken == "" {
			return out, nil
		}
		req.PageToken = resp.NextPageToken
	}
	return nil, fmt.Errorf("identity: too many registration entries for %s", id)
}

func selectorStrings(sels []*types.Selector) []string {
	out := make([]string, 0, len(sels))
	for _, s := range sels {
		out = append(out, s.Type+":"+s.Value)
	}
	slices.Sort(out)
	return out
}

func spiffeIDProto(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

func spiffeIDString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.TrustDomain + id.Path
}

// Check reports whether the SPIRE server answers the entry API the broker's lookups use. Its error
// gives the gRPC status code, not the server's address.
func (a *Attestations) Check(ctx context.Context) error {
	if _, err := a.entries.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 1}); err != nil {
		return fmt.Errorf("identity: SPIRE server unreachable or refusing the entry API (%s)", status.Code(err))
	}
	return nil
}
