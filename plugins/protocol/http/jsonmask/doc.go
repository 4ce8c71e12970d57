// Package jsonmask masks fields of JSON bodies as they stream from an upstream to a client, with the
// strategies columns are masked with (broker/inspect: partial, hash, redact, null).
//
// Fields are named by Path, a subset of JSONPath: "$.ssn", "$.items[*].email", "$..ssn" (at any
// depth), "$.secrets.*" and "$[\"odd key\"]". Keys are compared after decoding, so "s\u0073n" is
// "ssn"; every occurrence of a duplicated key is masked.
//
// What a masked position yields:
//
//	string          the strategy applied to its decoded value, as a JSON string; null gives null
//	number          the strategy applied to its text (hash of "42" is the hash of the column text
//	                "42"), as a JSON string; null gives null
//	true, false     "***" (null gives null): a value with two states cannot be partly shown or hashed
//	null            null, unchanged: there is nothing to hide
//	object, array   "***" whole (null gives null); its content is still parsed, never written
//
// Filter.Copy is a strict streaming tokenizer written for this package, not encoding/json's: it
// keeps a window of the body (32 KiB, growing only to hold one key, number or masked string up to
// MaxToken), copies everything unmasked byte for byte, whitespace included, and refuses anything
// that is not exactly one JSON value (RFC 8259) with ErrInvalid, and nesting beyond MaxDepth or a
// held token beyond MaxToken with ErrLimit. encoding/json's Decoder.Token allocates per token and
// cannot copy unmasked spans through; FuzzJSONMask holds this tokenizer to encoding/json's reading.
//
// Keys are matched exactly and case-sensitively, as JSON defines them. A client that decodes keys
// case-insensitively (Go's encoding/json into structs does) reads "SSN" as "ssn": an upstream that
// changes a key's case gets it past a rule written for the other case. Catalogs should name the
// keys the upstream sends.
package jsonmask
