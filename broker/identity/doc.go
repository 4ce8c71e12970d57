// Package identity turns SPIFFE identities into TLS configurations and peers.
//
// The broker's own identity comes from the SPIRE agent's Workload API through go-spiffe's X509Source,
// which rotates the SVID and bundles in place: TLS configurations built here read the current SVID on
// every handshake, so rotation needs no restart and does not disturb sessions already running. The
// broker presents the same SVID to backends whose TLS it verifies (BackendConfig).
//
// Clients must present an X.509-SVID of the broker's trust domain or of a federated one. Session
// tickets are disabled because Go does not call VerifyPeerCertificate on resumed sessions
// (golang/go#77217), so a resumed session would skip SVID verification.
//
// Attestations asks the SPIRE server what it attested about a caller (its registration entry's
// selectors and its node), with a bounded cache, so that policies can decide on it; a Peer carries
// the answer. JWTVerifier verifies JWT-SVIDs presented as bearer tokens, against SPIRE's bundles or
// OIDC discovery; no engine takes bearer tokens yet.
package identity
