// Package authz decides with Cedar: every connection, statement, sensitive column and credential role.
//
// Policies load from a directory (Cedar text, *.cedar, or Cedar JSON, *.cedar.json) and are validated
// strictly against the schema in policies/; every policy needs a unique @id annotation, which becomes
// its policy ID. A set that does not load is refused whole and the set in force stays. Decisions are
// deny by default, and any evaluation error denies: cedar-go skips a policy that errors, so an erroring
// forbid would otherwise let a request through.
//
// Each decision carries the IDs of the policies that decided it and the obligations their annotations
// set (@approval, @record, @mask), and a decision ID for the audit log. Policies are indexed by action
// and resource type, so a decision evaluates only the policies that can apply to it.
package authz
