// Package policytest runs policy test files (*.test.hcl): each states a request in the terms of the
// catalog (principal, selectors, action, target, table, column, role or function, context facts) and
// the decision expected, with its deciding policies and obligations if given. Requests are built
// with authz.BuildRequest, as the broker builds them, from the catalog the file declares (catalog and
// group blocks, as in the broker's configuration, or a shared catalog_file) or, failing that, the one
// the caller passes (the broker's own, for `svidbroker policy test --config`).
//
// Errors keep the "authz:" prefix that `svidbroker policy test` has always shown.
package policytest
