// Package identity turns SPIFFE identities into TLS configurations and peers.
//
// The broker's own identity comes from the SPIRE agent's Workload API through go-spiffe's X509Source,
// which rotates the SVID and bundles in place: TLS configurations built here read the current SVID on
// every handshake, so rotation needs no restart and does not disturb sessions already running.
//
// Clients must present an X.509-SVID of the broker's trust domain. Session tickets are disabled because
// Go does not call VerifyPeerCertificate on resumed sessions (golang/go#77217), so a resumed session
// would skip SVID verification.
package identity
