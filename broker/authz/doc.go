// Package authz decides with Cedar: every connection, statement, function call, sensitive column,
// HTTP request, sensitive response field and credential role.
//
// Policies load from a directory (Cedar text, *.cedar, or Cedar JSON, *.cedar.json) and are validated
// strictly against the schema in policies/; every policy needs a unique @id annotation, which becomes
// its policy ID. A set that does not load is refused whole and the set in force stays; the Engine
// reloads when the files change (Watch) or when asked (Reload). Decisions are deny by default, and
// any evaluation error denies: cedar-go skips a policy that errors, so an erroring forbid would
// otherwise let a request through.
//
// Each decision carries the IDs of the policies that decided it and the obligations their annotations
// set (@approval, @record, @mask), and a decision ID for the audit log. Policies are indexed by action
// and resource type, so a decision evaluates only the policies that can apply to it.
//
// The model requests are built from is the Catalog (targets, their tables, tagged columns, routes,
// tagged response fields and credential roles, and groups of workloads) and the caller's
// identity.Peer. The schema's HTTP context records are generated from the catalog's routes
// (ParseSchemaFor). The Authorizer decides on it (Connect, Statement, Functions, ColumnMask,
// UseMasked, HTTP, FieldMask, PickRole), explains decisions (Explain) and lists
// what a workload may do (Can). Reading the catalog from HCL is config's (config.NewCatalog), and
// running policy test files is authz/policytest's.
package authz
