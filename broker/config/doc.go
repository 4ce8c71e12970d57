// Package config loads svidbroker's HCL configuration file.
//
// Decoding is strict: an unknown field, a missing required field or a value of the wrong type is an
// error, and every error names the file, the line and the field, with a hint where one helps (HCL's
// "Did you mean" suggestions for typos). Validate fills in defaults and checks values that decoding
// alone cannot, such as SPIFFE IDs, addresses and durations, again naming file:line, and lists every
// problem of the file at once. It checks one block at a time, in the order of validate.go.
//
// The blocks whose meaning belongs to a plugin are checked by that plugin, through the Plugins that
// cmd passes to Load: a target's backend and timeouts blocks by the Protocol registered under the
// target's protocol name, the vault block by the Vault credential plugin. A plugin reports through a
// Check, which names file:line as config does, and shares config's checks of what every backend
// has (BackendAuth, BackendCAFile). config imports no plugin; a new kind of target brings its own
// Protocol, and cmd adds it to Plugins.
//
// The catalog and group blocks, which policy test files also hold, decode into CatalogBlock and
// GroupBlock; NewCatalog turns them into the model authz decides with.
package config
