package metrics

import (
	"slices"
	"time"
)

// Target is a Metrics bound to one target and its protocol, for the sessions of that target. What
// it counts into is resolved once, so that counting an operation of the default kind costs no
// lookup; and each session counts its operations through a Target of its own (ForSession), into a
// stripe of the target's counts that it shares with few others or none (operations).
type Target struct {
	m      *Metrics
	ops    *operations // the target's, which name it and its protocol
	stripe *opStripe
	active interface{ Add(float64) }
	opKind string // the default kind, which Operation's "" counts as
	kind   int    // its index in ops
}

// Target returns m bound to target, whose engine speaks protocol and names its operations kind
// ("sql", "http"). Nil when m is nil.
func (m *Metrics) Target(target, protocol, kind string) *Target {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	var ops *operations
	if i := slices.IndexFunc(m.ops, func(o *operations) bool { return o.target == target && o.protocol == protocol }); i >= 0 {
		ops = m.ops[i]
	} else {
		ops = &operations{target: target, protocol: protocol}
		m.ops = append(m.ops, ops)
	}
	m.mu.Unlock()
	return &Target{m: m, ops: ops, stripe: &ops.stripes[0], active: m.sessionsActive.WithLabelValues(target, protocol),
		opKind: kind, kind: ops.index(kind)}
}

// ForSession returns t for one session: the same metrics, its operations counted in the stripe of
// the target's counts that is next in turn. Nil when t is nil.
func (t *Target) ForSession() *Target {
	if t == nil {
		return nil
	}
	s := *t
	s.stripe = t.ops.stripe()
	return &s
}

func (t *Target) sessionLabels(spiffeID string, more ...string) []string {
	l := []string{t.ops.target, t.ops.protocol}
	if t.m.cfg.SPIFFEIDLabels {
		l = append(l, t.m.spiffeIDLabel(spiffeID))
	}
	return append(l, more...)
}

// SessionStarted counts a session that opened, and makes it active until SessionEnded.
func (t *Target) SessionStarted(spiffeID string) {
	if t == nil {
		return
	}
	t.m.sessionsStarted.WithLabelValues(t.sessionLabels(spiffeID)...).Inc()
	t.active.Add(1)
}

// SessionRefused counts a session refused before it opened; reason is one of a fixed set
// ("not_ready", "unattested", "denied", ...), never the refusal's text.
func (t *Target) SessionRefused(spiffeID, reason string) {
	if t == nil {
		return
	}
	t.m.sessionsRefused.WithLabelValues(t.sessionLabels(spiffeID, reason)...).Inc()
}

// SessionEnded counts the end of a session SessionStarted counted, with its outcome (one of a fixed
// set, never an error's text).
func (t *Target) SessionEnded(outcome string) {
	if t == nil {
		return
	}
	t.m.sessionsEnded.WithLabelValues(t.ops.target, t.ops.protocol, outcome).Inc()
	t.active.Add(-1)
}

// Outcomes of an operation (Operation).
const (
	Allowed = iota
	Masked
	Held
	Refused
)

// outcomeNames are Operation's outcomes as labels.
var outcomeNames = [...]string{Allowed: "allowed", Masked: "masked", Held: "held", Refused: "refused"}

// Operation counts an operation of kind decided with outcome (Allowed, Masked, Held or Refused), and,
// unless it was held, observes the time the broker took to decide it. kind is one of the engine's
// fixed classes ("select", "ddl"), never client text; "" is the target's default kind. An outcome
// out of range counts as Refused.
func (t *Target) Operation(kind string, outcome int, took time.Duration) {
	if t == nil {
		return
	}
	if outcome < Allowed || outcome > Refused {
		outcome = Refused
	}
	t.stripe.ops[t.kindIndex(kind)][outcome].Add(1)
	if outcome != Held { // a held operation's time is mostly a person's: approval_wait_seconds has it
		t.stripe.observe(took)
	}
}

// kindIndex is kind's index in the target's counts.
func (t *Target) kindIndex(kind string) int {
	if kind == "" || kind == t.opKind {
		return t.kind
	}
	return t.ops.index(kind)
}

// OperationRefused counts an operation of kind the engine refused before deciding it (one that does
// not parse, or that breaks a protocol rule or a limit): the broker's time is not observed.
func (t *Target) OperationRefused(kind string) {
	if t == nil {
		return
	}
	t.stripe.ops[t.kindIndex(kind)][Refused].Add(1)
}

// ApprovalHeld counts an operation that starts waiting for a person's approval; ApprovalDone ends
// that wait, with its outcome ("approved", "denied", "expired", "failed" or "withdrawn").
func (t *Target) ApprovalHeld() {
	if t == nil {
		return
	}
	t.m.approvalsPending.Inc()
}

// ApprovalDone: see ApprovalHeld.
func (t *Target) ApprovalDone(outcome string, waited time.Duration) {
	if t == nil {
		return
	}
	t.m.approvalsPending.Dec()
	t.m.approvalWait.Observe(waited.Seconds())
	t.m.approvals.WithLabelValues(outcome).Inc()
}
