package metrics

import (
	"sync"
	"time"
)

// Target is a Metrics bound to one target and its protocol, for the sessions of that target. Its
// label children are resolved once, so that counting an operation costs no label lookup.
type Target struct {
	m                *Metrics
	target, protocol string
	active           interface{ Add(float64) }
	added            interface{ Observe(float64) }
	allowed, masked  interface{ Inc() }
	held, refused    interface{ Inc() }
	opKind           string
	kinds            sync.Map // operation kind → *kindCounters, the other kinds' children, resolved once
}

// kindCounters are the operation counters of one kind, by outcome (Allowed ... Refused).
type kindCounters [len(outcomeNames)]interface{ Inc() }

// Target returns m bound to target, whose engine speaks protocol and names its operations kind
// ("sql", "http"). Nil when m is nil.
func (m *Metrics) Target(target, protocol, kind string) *Target {
	if m == nil {
		return nil
	}
	return &Target{m: m, target: target, protocol: protocol, opKind: kind,
		active:  m.sessionsActive.WithLabelValues(target, protocol),
		added:   m.operationAdded.WithLabelValues(protocol),
		allowed: m.operations.WithLabelValues(target, protocol, kind, "allowed"),
		masked:  m.operations.WithLabelValues(target, protocol, kind, "masked"),
		held:    m.operations.WithLabelValues(target, protocol, kind, "held"),
		refused: m.operations.WithLabelValues(target, protocol, kind, "refused"),
	}
}

func (t *Target) sessionLabels(spiffeID string, more ...string) []string {
	l := []string{t.target, t.protocol}
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
	t.m.sessionsEnded.WithLabelValues(t.target, t.protocol, outcome).Inc()
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
// fixed classes ("select", "ddl"), never client text; "" is the target's default kind.
func (t *Target) Operation(kind string, outcome int, took time.Duration) {
	if t == nil {
		return
	}
	if kind != "" && kind != t.opKind {
		if outcome < Allowed || outcome > Refused {
			outcome = Refused
		}
		t.kindCounters(kind)[outcome].Inc()
	} else {
		switch outcome {
		case Allowed:
			t.allowed.Inc()
		case Masked:
			t.masked.Inc()
		case Held:
			t.held.Inc()
		default:
			t.refused.Inc()
		}
	}
	if outcome != Held { // a held operation's time is mostly a person's: approval_wait_seconds has it
		t.added.Observe(took.Seconds())
	}
}

// kindCounters returns the counters of operations of kind, resolving them at its first operation.
// kind is one of the engine's fixed classes, so the map stays as small as that set.
func (t *Target) kindCounters(kind string) *kindCounters {
	if c, ok := t.kinds.Load(kind); ok {
		return c.(*kindCounters)
	}
	var c kindCounters
	for i, outcome := range outcomeNames {
		c[i] = t.m.operations.WithLabelValues(t.target, t.protocol, kind, outcome)
	}
	got, _ := t.kinds.LoadOrStore(kind, &c)
	return got.(*kindCounters)
}

// OperationRefused counts an operation of kind the engine refused before deciding it (one that does
// not parse, or that breaks a protocol rule or a limit): the broker's time is not observed.
func (t *Target) OperationRefused(kind string) {
	if t == nil {
		return
	}
	if kind == "" || kind == t.opKind {
		t.refused.Inc()
		return
	}
	t.kindCounters(kind)[Refused].Inc()
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
