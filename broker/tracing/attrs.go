package tracing

import "go.opentelemetry.io/otel/attribute"

// The broker's own span attributes, where no semantic convention fits. Their values are the broker's
// fixed words, names from the configuration and policies, and SPIFFE IDs (which are not secret).
const (
	// TargetKey is the target's name from the configuration.
	TargetKey = attribute.Key("svidbroker.target")
	// SessionKey is the session's ID, as the audit log and the logs name it.
	SessionKey = attribute.Key("svidbroker.session.id")
	// SPIFFEIDKey is the caller's SPIFFE ID.
	SPIFFEIDKey = attribute.Key("svidbroker.spiffe_id")
	// OutcomeKey is how a session or an operation ended: "allow", "mask", "held", "block"; a
	// session's refusal reason or end outcome, as metrics name them.
	OutcomeKey = attribute.Key("svidbroker.outcome")
	// PoliciesKey are the IDs (@id) of the policies that decided an operation.
	PoliciesKey = attribute.Key("svidbroker.policy.ids")
	// OperationKindKey is the operation's class: a statement's kind ("select", "ddl"), "http".
	OperationKindKey = attribute.Key("svidbroker.operation.kind")
	// ApprovalKey is the approval request a held operation waited on, and ApprovalStateKey its state.
	ApprovalKey      = attribute.Key("svidbroker.approval.request")
	ApprovalStateKey = attribute.Key("svidbroker.approval.state")
	// RoleKey is the credential role a session's lease was made for.
	RoleKey = attribute.Key("svidbroker.credential.role")
)
