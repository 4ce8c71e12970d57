package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/examples/internal/apitoken"
)

const (
	// MCPPath is where the server speaks MCP (Streamable HTTP).
	MCPPath = "/mcp"
	// RotatePath changes summarize's description (see Rotate); loopback peers only, no token.
	RotatePath = "/admin/rotate-description"
	// statelessVersion is the first protocol version without sessions: its requests carry it in
	// Mcp-Protocol-Version, and go to the stateless handler.
	statelessVersion = "2026-07-28"
	maxRequestBytes  = 1 << 20
	sessionIdle      = 30 * time.Minute
)

// handler serves /healthz, MCP at MCPPath behind the token check, and (when rotate is set) RotatePath.
//
// go-sdk serves 2026-07-28 only from a stateless handler and the versions before it with sessions
// only from a stateful one, so requests are routed by their Mcp-Protocol-Version header: 2026-07-28
// and later to the stateless handler, the rest (no header: initialize, or 2025-03-26 clients) to the
// stateful one. Both serve the same server, so a rotated description shows in either.
//
// The SDK's DNS-rebinding guard (a loopback listener refuses a Host that is not loopback) is off: it
// protects servers without authentication from web pages, and every request here needs a token no
// page has; a proxy in front (the broker) may pass on the Host its own client used.
func (s *shop) handler(rotate bool) http.Handler {
	stateful := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.srv },
		&mcp.StreamableHTTPOptions{Logger: s.log, SessionTimeout: sessionIdle, MaxRequestBodyBytes: maxRequestBytes, DisableLocalhostProtection: true})
	stateless := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.srv },
		&mcp.StreamableHTTPOptions{Logger: s.log, Stateless: true, MaxRequestBodyBytes: maxRequestBytes, DisableLocalhostProtection: true})
	mcpH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("Mcp-Protocol-Version"); v >= statelessVersion {
			stateless.ServeHTTP(w, r)
			return
		}
		stateful.ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle(MCPPath, s.authenticate(mcpH))
	if rotate {
		mux.HandleFunc("POST "+RotatePath, s.rotate)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no route for %s %s: MCP is served at %s", r.Method, r.URL.Path, MCPPath)})
	})
	return mux
}

// authenticate checks every request's bearer token against api.tokens (apitoken.Check): a known,
// unexpired token of a role the server knows. refund and send_email check the role again.
func (s *shop) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, err := apitoken.Check(r.Context(), s.tokens, r.Header)
		switch {
		case errors.Is(err, apitoken.ErrUnavailable):
			s.log.ErrorContext(r.Context(), "token lookup", "error", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": apitoken.Message(err)})
			return
		case err != nil:
			apitoken.Challenge(w.Header(), "mcpshop", err)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": apitoken.Message(err)})
			return
		case !slices.Contains(knownRoles, role):
			writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf("a token of role %s may not use this server: it serves %s",
				role, strings.Join(knownRoles, " and "))})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// rotate changes summarize's description: the body (text, at most maxDescription bytes) is the new
// one, or when empty the built-in alternative (and back). Only a loopback peer may: the endpoint
// exists for tests and demos of pinned tool definitions, which change the tool under an agent.
func (s *shop) rotate(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": RotatePath + " answers loopback peers only"})
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDescription))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("the description is larger than %d bytes", maxDescription)})
		return
	}
	d, err := s.Rotate(strings.TrimSpace(string(b)))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.log.InfoContext(r.Context(), "summarize's description rotated", "bytes", len(d))
	writeJSON(w, http.StatusOK, map[string]string{"tool": "summarize", "description": d})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
