// Package metrics is the broker's Prometheus instrumentation: one registry, served on the admin
// listener's /metrics, and the hooks the core packages call as sessions open, operations are
// decided, leases are taken and audit records are written.
//
// A *Metrics is passed to the packages that report through their configs. Every method works on a
// nil *Metrics (and a nil *Target) and does nothing, so code and tests that configure no metrics need
// no checks.
//
// Labels carry only bounded, non-secret values: target names and protocols from the configuration,
// Cedar actions from the schema, policy IDs from the loaded policy sets, and fixed outcome names.
// SPIFFE IDs become labels only when Config.SPIFFEIDLabels opts in, and at most Config.MaxSPIFFEIDs
// distinct ones: later callers are counted as "other". No statement text, credential, lease ID or
// value a policy protects is ever a label.
package metrics
