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
// Filter.Append runs the same tokenizer over a body already in memory (an event's data), reading it in
// place; FuzzJSONMask holds it to Copy.
//
// The common cases run in place in the window: string contents are scanned eight bytes at a time,
// a key without escapes is compared as it stands (and not at all when no rule names a key of its
// first byte and length), and an object or array below which no rule reaches, or one masked whole,
// is validated by an iterative skip that compares no keys; an unmasked string or number member is
// passed over in the object's own loop, and a number is scanned and validated in one pass
// (FuzzNumberEnd holds it to the byte run and validNumber). Each falls back to the general path
// (escapes, a token across the window's edge, an error), so what is accepted, refused, limited and
// written does not depend on it; FuzzSkip holds the skip to the general walk, errors and offsets
// included. Output is gathered in a buffer of 32 KiB and written in pieces of that size.
//
// Keys are matched exactly and case-sensitively, as JSON defines them. A client that decodes keys
// case-insensitively (Go's encoding/json into structs does) reads "SSN" as "ssn": an upstream that
// changes a key's case gets it past a rule written for the other case. Catalogs should name the
// keys the upstream sends.
package jsonmask
