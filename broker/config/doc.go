// Package config loads svidbroker's HCL configuration file.
//
// Decoding is strict: an unknown field, a missing required field or a value of the wrong type is an
// error, and every error names the file, the line and the field, with a hint where one helps (HCL's
// "Did you mean" suggestions for typos). Validate fills in defaults and checks values that decoding
// alone cannot, such as SPIFFE IDs, addresses and durations, again naming file:line.
package config
