package server

import (
	"context"
	"net"
)

// Engine speaks one wire protocol. A protocol plugin implements it; the server owns listening, limits,
// deadlines and shutdown, so every protocol gets them the same way.
type Engine interface {
	// Handshake runs a new client's pre-authentication phase on conn: the protocol's preamble, the TLS
	// handshake with the client's SVID, the authorization to connect, and the backend connection. ctx
	// carries the handshake deadline. On error the engine has already told the client, in the
	// protocol's own terms, and the server closes conn.
	Handshake(ctx context.Context, conn net.Conn) (Session, error)
}

// Session is an authenticated client relayed to its backend.
type Session interface {
	// Run relays until either side ends the session or ctx is cancelled, then releases everything the
	// session holds. It returns nil when the client ended the session normally.
	Run(ctx context.Context) error
}
