// Package tracing gives the broker's sessions and operations OpenTelemetry spans, exported over
// OTLP/HTTP to a collector (go.opentelemetry.io/otel), and carries W3C trace context between an HTTP
// caller, the broker and the upstream.
//
// A nil *Tracing is tracing off: every method is safe on it and costs nothing, so engines and the
// session core hold one without checking. What spans carry is bounded by the callers: targets,
// protocols, SPIFFE IDs, routes, policy IDs and outcomes; never a credential, a row or a field's
// value, and statement text only in its normalized form (constants replaced by placeholders), when
// Config.StatementText is set.
package tracing
