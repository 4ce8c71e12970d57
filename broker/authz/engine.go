package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/svidbroker/svidbroker/broker/metrics"
)

// Config configures an Engine.
type Config struct {
	// Dir holds the policies.
	Dir string
	// Schema validates them.
	Schema *Schema
	// Logger receives reloads and evaluation errors. Default slog.Default().
	Logger *slog.Logger
	// Metrics, if set, counts decisions, their time, and reloads, and shows the set in force.
	Metrics *metrics.Metrics
}

// Engine decides requests against the policy set in force, which it can reload atomically.
type Engine struct {
	cfg     Config
	current atomic.Pointer[policySet]
	reload  sync.Mutex // one reload at a time
	// refused identifies the files (or the error reading them) last refused, and refusedErr is why,
	// under reload: a set that stays broken is neither parsed again nor logged at every reload
	// interval.
	refused    string
	refusedErr error
	// parsed counts the sets parsed, under reload.
	parsed  int
	changes changes

	// EvalErrors counts decisions denied because a policy failed to evaluate.
	EvalErrors atomic.Int64
	// ReloadFailures counts refused policy sets: each distinct set of files once, however many
	// reloads find it.
	ReloadFailures atomic.Int64
}

type policySet struct {
	policies []Policy
	byID     map[string]Policy
	index    *indexed
	digest   string
	loaded   time.Time
}

// New loads the policy set. A set that does not load is an error: the broker does not start without
// a valid policy set.
func New(cfg Config) (*Engine, error) {
	if cfg.Schema == nil {
		return nil, fmt.Errorf("authz: a schema is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{cfg: cfg}
	if err := e.Reload(); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload loads the directory again. If the new set is invalid, the error lists every problem and the
// set in force stays; otherwise the new set replaces it in one step, so every decision sees one whole
// set.
func (e *Engine) Reload() error {
	e.reload.Lock()
	defer e.reload.Unlock()
	digest, err := dirDigest(e.cfg.Dir)
	if err != nil {
		e.refuse("unreadable\x00"+err.Error(), "policy directory unreadable; the previous set stays in force", err)
		return err
	}
	if cur := e.current.Load(); cur != nil && cur.digest == digest {
		e.refused = ""
		return nil
	}
	if digest == e.refused {
		return e.refusedErr // the same files: parsing them again would refuse them again
	}
	e.parsed++
	policies, err := LoadDir(e.cfg.Dir, e.cfg.Schema)
	if err != nil {
		e.refuse(digest, "policy set refused; the previous set stays in force", err)
		return err
	}
	e.refused = ""
	set := &policySet{policies: policies, byID: map[string]Policy{}, index: newIndex(policies), digest: digest, loaded: time.Now()}
	for _, p := range policies {
		set.byID[p.ID] = p
	}
	e.current.Store(set)
	e.cfg.Metrics.PolicyLoaded(digest)
	e.changed()
	e.cfg.Logger.Info("policy set loaded", "dir", e.cfg.Dir, "policies", len(policies), "digest", digest)
	return nil
}

// refuse counts and logs a refused set, once for as long as key (the files' digest, or the error
// reading them) stays the same. Called with e.reload held.
func (e *Engine) refuse(key, msg string, err error) {
	e.refusedErr = err
	if key == e.refused {
		return
	}
	e.refused = key
	e.ReloadFailures.Add(1)
	e.cfg.Metrics.PolicyRefused()
	e.cfg.Logger.Error(msg, "dir", e.cfg.Dir, "error", err)
}

// Watch reloads when the directory's contents change, checking every interval, until ctx ends.
func (e *Engine) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = e.Reload() // a refused set is logged and counted
		}
	}
}

// Digest identifies the policy set in force.
func (e *Engine) Digest() string { return e.current.Load().digest }

// Policies returns the policy set in force.
func (e *Engine) Policies() []Policy { return e.current.Load().policies }

// Policy returns the policy with the @id id in the set in force.
func (e *Engine) Policy(id string) (Policy, bool) {
	p, ok := e.current.Load().byID[id]
	return p, ok
}

// Reason is the policy's @reason annotation: why it exists, in its author's words; "" when it has none.
func (p Policy) Reason() string { return string(p.Policy.Annotations()["reason"]) }

// Decide evaluates req. Default deny; any evaluation error denies.
func (e *Engine) Decide(req Request) Decision { return e.decideIn(e.current.Load(), req) }

// decideIn evaluates req under set, for callers that ask several questions of one set.
func (e *Engine) decideIn(set *policySet, req Request) Decision {
	var start time.Time
	if e.cfg.Metrics != nil {
		start = time.Now()
	}
	cr := cedar.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: req.Context}
	d, diag := cedar.Authorize(set.index.policies(req.Action, req.Resource.Type), req.Entities, cr)
	out := decision(set, d, diag)
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.Decision(string(req.Action.ID), out.Allow, out.Reasons, time.Since(start))
	}
	if len(out.Errors) > 0 {
		e.EvalErrors.Add(1)
		e.cfg.Logger.Warn("policy evaluation error: request denied", "decision", out.ID, "action", string(req.Action.ID),
			"policies", out.Reasons, "error", out.Errors[0].Message)
	}
	return out
}

// FullScan evaluates req against every policy, without the index. It exists to measure the index and
// to check that it changes no decision.
func (e *Engine) FullScan(req Request) Decision {
	set := e.current.Load()
	cr := cedar.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: req.Context}
	d, diag := cedar.Authorize(policyList(set.policies), req.Entities, cr)
	return decision(set, d, diag)
}

// dirDigest hashes the names and contents of the policy files, to notice changes cheaply.
func dirDigest(dir string) (string, error) {
	h := sha256.New()
	files, err := policyFiles(dir)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("authz: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Ready reports whether a valid policy set is in force.
func (e *Engine) Ready() error {
	if e.current.Load() == nil {
		return errors.New("authz: no valid policy set in force")
	}
	return nil
}
