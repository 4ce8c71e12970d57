// Package tools pins the third-party programs that the test stack and the demo run (SPIRE, and later
// others). They are Go "tool" dependencies of this separate module so that their dependency graphs never
// mix with the broker's. Build them with `make tools`.
package tools
