// Package inspect holds what protocol plugins share to act on decisions: today, the masking
// strategies a denied column:read-unmasked names (partial, hash, redact, null), the hash strategy's
// keyed pseudonyms (AES-CMAC) among them.
package inspect
