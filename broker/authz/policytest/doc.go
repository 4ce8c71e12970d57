// Package policytest runs policy test files (*.test.hcl): each states a request in the terms of the
// catalog (principal, selectors, action, target, table, column, role, function, or an HTTP route with
// its path parameters, query, body and response field; context facts) and
// the decision expected, with its deciding policies and obligations if given. Requests are built
// with authz.BuildRequest, as the broker builds them, from the catalog the file declares (catalog and
// group blocks, as in the broker's configuration, or a shared catalog_file) or, failing that, the one
// the caller passes (the broker's own, for `svidbroker policy test --config`).
//
// The HTTP context's records (context.params, .query, .body) are generated from the catalogs: Schema
// gives the schema to load the policies under test with, from the catalogs of every test file.
//
// Errors keep the "authz:" prefix that `svidbroker policy test` has always shown.
package policytest
