package audit

import "time"

// Record kinds.
const (
	KindSessionStart = "session_start"
	KindSessionEnd   = "session_end"
	KindDecision     = "decision"
	KindStatement    = "statement"
	KindResult       = "result"
	KindError        = "error"
	// KindDenied is a statement the broker refused; it never reached the backend.
	KindDenied = "denied"
	// KindApproval is an approval request's state: "pending", then its outcome.
	KindApproval = "approval"
	// KindLease is an event of the session's backend credential, by its LeaseID: Detail "event" is
	// "acquired", "renewal failed", or what became of it at the session's end ("revoked", ...). A
	// lease that a previous run of the broker left behind (it died with the session open) is recorded
	// with no session when the next start revokes it: Detail "event" is "revoked", and "found" is
	// "at start" (OrphanRevoked).
	KindLease = "lease"
	// KindChainStart is a chain's first record, written and signed when the chain is created: a chain
	// without it, or without its checkpoint, was cut. Detail "chain" names the chain.
	KindChainStart = "chain_start"
	// KindWriteFailed records that the store failed and recovered: Detail "error" is the failure,
	// "lost_from" and "lost_to" the records chained but never written (their statements were
	// refused; records nobody waited for, such as result summaries, are lost), "torn_offset",
	// "torn_bytes" and "torn_sha256" the incomplete bytes cut from the log's end, "torn_checkpoint_*"
	// those cut from the checkpoints file, and "found" is "at start" when a restart found them.
	KindWriteFailed = "audit_write_failed"
)

// Record is one event of a session. Secrets never go in a record: credentials appear as lease IDs.
type Record struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Session string    `json:"session"`
	// SPIFFEID is the caller; Target the backend.
	SPIFFEID string `json:"spiffe_id,omitempty"`
	Target   string `json:"target,omitempty"`
	// Remote is the client's address.
	Remote string `json:"remote,omitempty"`

	Decision  *Decision  `json:"decision,omitempty"`
	Statement *Statement `json:"statement,omitempty"`
	Result    *Result    `json:"result,omitempty"`
	// LeaseID identifies the backend credential, never the secret itself.
	LeaseID string `json:"lease_id,omitempty"`
	// Error is a short, data-free description (an SQLSTATE and a class, not a server message that may
	// quote row values).
	Error string `json:"error,omitempty"`
	// Detail holds other facts: the SVID's expiry, the end reason, selectors.
	Detail map[string]string `json:"detail,omitempty"`
}

// Decision is an authorization decision as recorded.
type Decision struct {
	ID          string   `json:"id"`
	Action      string   `json:"action"`
	Resource    string   `json:"resource"`
	Allow       bool     `json:"allow"`
	Policies    []string `json:"policies,omitempty"`
	Approval    string   `json:"approval,omitempty"`
	Record      string   `json:"record,omitempty"`
	Mask        string   `json:"mask,omitempty"`
	PolicySet   string   `json:"policy_set,omitempty"`
	ErrorPolicy string   `json:"error_policy,omitempty"`
}

// Statement is a statement as the client sent it.
type Statement struct {
	// Protocol is "simple" (Query) or "extended" (Parse).
	Protocol string `json:"protocol"`
	Text     string `json:"text"`
	// Name is the prepared statement's name in the extended protocol.
	Name string `json:"name,omitempty"`
	// Kinds are the classes of the statements in Text ("select", "ddl", ...), in order.
	Kinds []string `json:"kinds,omitempty"`
	// Params are the bound parameters of an execution in text form; a parameter of a statement that
	// mentions a masked column is withheld.
	Params []string `json:"params,omitempty"`
	// Masked are the result columns masked for the client ("public.customers.email=hash").
	Masked []string `json:"masked,omitempty"`
}

// Result summarizes what came back for one statement.
type Result struct {
	Tag   string `json:"tag"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
	// Unit names what Rows counts when it is not a result's rows: "masked values" of an HTTP
	// response (its JSON body's, or its event stream's across events). "" is rows.
	Unit string `json:"unit,omitempty"`
	// Columns and Data are the result as the client saw it (masked), when the data is recorded:
	// text values, NULL as null, binary values as "<N bytes>". Truncated says rows were left out.
	Columns   []string    `json:"columns,omitempty"`
	Data      [][]*string `json:"data,omitempty"`
	Truncated bool        `json:"truncated,omitempty"`
}

// Sink is where the data path records. What a protocol engine waits for, and when, is how it keeps
// its durability promise (audit durability = "commit" or "statement"): Write before a statement
// reaches the backend, and Flush before anything commits.
type Sink interface {
	// Write returns once the store holds rec, so that the broker process dying loses nothing written;
	// rec is durable within the flush interval. urgent starts its flush at once, for a record that a
	// commit point will wait for.
	Write(rec Record, urgent bool) error
	// Flush returns once every record written before it is durable (on stable storage).
	Flush() error
	// AppendAsync queues rec without waiting; an error fails the sink for the next Write or Flush.
	AppendAsync(Record)
}

// OrphanRevoked is the record of a lease that a previous run of the broker left in its journal,
// revoked at time t by the next start: it belongs to no session of this run.
func OrphanRevoked(t time.Time, leaseID string) Record {
	return Record{Time: t.UTC(), Kind: KindLease, LeaseID: leaseID, Detail: map[string]string{"event": "revoked", "found": "at start"}}
}
