package identity

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
)

// Peer is an authenticated caller, as far as its SVID tells.
type Peer struct {
	// ID is the caller's SPIFFE ID, from the verified X.509-SVID.
	ID spiffeid.ID
	// Expires is when the caller's SVID stops being valid.
	Expires time.Time
	// Attestation is what SPIRE attested about the caller, when the broker is configured to ask
	// (spire_server); nil otherwise.
	Attestation *Attestation
}

// TrustDomain is the trust domain of the peer's SPIFFE ID.
func (p Peer) TrustDomain() spiffeid.TrustDomain { return p.ID.TrustDomain() }

// Segments returns the path of the peer's SPIFFE ID split into segments, for exact segment matching.
func (p Peer) Segments() []string {
	path := strings.TrimPrefix(p.ID.Path(), "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

// PeerFromTLS extracts the peer of a completed, verified handshake.
func PeerFromTLS(state tls.ConnectionState) (Peer, error) {
	if !state.HandshakeComplete {
		return Peer{}, errors.New("identity: TLS handshake not complete")
	}
	id, err := spiffetls.PeerIDFromConnectionState(state)
	if err != nil {
		return Peer{}, fmt.Errorf("identity: %w", err)
	}
	return Peer{ID: id, Expires: state.PeerCertificates[0].NotAfter}, nil
}

// ErrNotAllowed is returned when an authenticated peer is not allowed to use a target.
var ErrNotAllowed = errors.New("not allowed")

// AuthorizeExact allows exactly the listed SPIFFE IDs. IDs compare as parsed values, so
// spiffe://td/agent/a never matches spiffe://td/agent/a-evil or spiffe://td/agent/a/x.
func AuthorizeExact(allowed []spiffeid.ID) func(spiffeid.ID) error {
	set := make(map[spiffeid.ID]struct{}, len(allowed))
	for _, id := range allowed {
		set[id] = struct{}{}
	}
	return func(id spiffeid.ID) error {
		if _, ok := set[id]; !ok {
			return fmt.Errorf("identity: %s is %w", id, ErrNotAllowed)
		}
		return nil
	}
}
