// Package policies holds svidbroker's Cedar schema, the policy packs, and their tests. The schema is
// embedded so that the broker and `svidbroker policy` validate against exactly this file.
package policies

import _ "embed"

// Schema is svidbroker.cedarschema.
//
//go:embed svidbroker.cedarschema
var Schema []byte
