package wire

import (
	"slices"
	"strings"
)

// Rules are what one protocol version allows on the Streamable HTTP transport. The table below is the
// only place these facts live; everything else in the package asks it.
type Rules struct {
	Version string
	// Initialize: the client opens with an initialize request (removed in 2026-07-28, which is stateless
	// and starts with server/discover).
	Initialize bool
	// Sessions: the server may bind later requests to the Mcp-Session-Id its initialize response set.
	Sessions bool
	// Batches: a POST body may be a JSON-RPC batch (an array of messages).
	Batches bool
	// VersionHeader: every request after initialize carries Mcp-Protocol-Version.
	VersionHeader bool
	// StandardHeaders: Mcp-Method (and Mcp-Name for tools/call, resources/read and prompts/get) are
	// required and must equal the body.
	StandardHeaders bool
	// MetaVersion: every call carries params._meta["io.modelcontextprotocol/protocolVersion"] equal
	// to the Mcp-Protocol-Version header.
	MetaVersion bool
	// ResumableStreams: SSE event ids may be used with Last-Event-ID to resume a stream.
	ResumableStreams bool
}

// versions is the version table, newest first.
var versions = []Rules{
	{Version: "2026-07-28", StandardHeaders: true, MetaVersion: true, VersionHeader: true},
	{Version: "2025-11-25", Initialize: true, Sessions: true, VersionHeader: true, ResumableStreams: true},
	{Version: "2025-06-18", Initialize: true, Sessions: true, VersionHeader: true, ResumableStreams: true},
	{Version: "2025-03-26", Initialize: true, Sessions: true, Batches: true, ResumableStreams: true},
	{Version: "2024-11-05", Initialize: true, Sessions: true, ResumableStreams: true},
}

// DefaultVersion is the version in force when a request names none (no Mcp-Protocol-Version header and
// not an initialize): the transport specification says a server assumes 2025-03-26.
const DefaultVersion = "2025-03-26"

// MetaKeyProtocolVersion is the params._meta key that carries a call's protocol version (2026-07-28).
const MetaKeyProtocolVersion = "io.modelcontextprotocol/protocolVersion"

// VersionRules returns the rules of version v and whether the package knows it.
func VersionRules(v string) (Rules, bool) {
	i := slices.IndexFunc(versions, func(r Rules) bool { return r.Version == v })
	if i < 0 {
		return Rules{}, false
	}
	return versions[i], true
}

// Versions lists the known protocol versions, newest first.
func Versions() []string {
	out := make([]string, len(versions))
	for i, r := range versions {
		out[i] = r.Version
	}
	return out
}

func versionList() string { return strings.Join(Versions(), ", ") }
