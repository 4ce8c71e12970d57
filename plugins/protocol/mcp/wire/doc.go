// Package wire is the MCP engine's message layer, on the go-sdk's jsonrpc and mcp types. It does no
// I/O beyond the reader and writer it is handed.
//
//   - ParsePost checks a client's POST (headers and body) and returns its messages; ParseGet checks a
//     GET (the server-to-client stream of a session); CheckSessionVersion checks a POST against the
//     version its session settled on (InitializeResultVersion reads it from the initialize result).
//   - Error is a refusal: a JSON-RPC code, an HTTP status and a message for the agent that names what
//     to fix and never quotes an argument's value; WriteError answers with it.
//   - ServerMessages relays a server's response (application/json, one message or a batch, or
//     text/event-stream, one message per event, event ids kept) message by message through a
//     function of the engine that passes, replaces or drops each; anything unreadable ends the relay.
//   - CallParams, ArgsDigest / Canonical, CheckParamHeaders / ParamHeaders, DecodeList,
//     DecodeToolResult / EncodeToolResult and EncodeResponse give the engine typed views of the
//     messages it decides on and rewrites.
//
// # Strictness
//
// jsonrpc.DecodeMessage is the reading of record (a checked message is built from its members as it
// reads them, which FuzzMessageMatchesSDK holds to it), but it is lax where a proxy must not be: it keeps
// the last of two members of one name, ignores unknown members, truncates a fractional id (1.5 is
// read as 1) and reads big ones through float64, reads "id": null as no id at all (so a request
// becomes a notification, whose response never comes), and passes invalid UTF-8. A proxy that decides
// on one reading of a message while the server acts on another is bypassed, so every message, from
// the client or the server, is first checked with jsontext (a strict RFC 8259 parser): one JSON
// value; no duplicate member names; no two member names of one object equal under case folding
// (encoding/json matches names case-insensitively, the SDK does not); valid UTF-8 without lone
// surrogate escapes; nesting within Limits.MaxDepth; only the members jsonrpc (exactly "2.0"), id,
// method, params, result and error; an id that is a string or an integer written without fraction or
// exponent within ±(2^53-1); params and result objects; a response with exactly one of result and
// error, and an error object of code, message and data only. On top of the framing: "notifications/*"
// methods never carry an id and every other method does; ids are unique among the requests (and
// among the responses) of a batch; initialize comes alone; the Mcp-* headers agree with the body.
// The engine forwards Message.Raw, the bytes it checked, so what it decided on is what the server
// reads.
//
// # Versions
//
// One table (versions, read through VersionRules) says what each protocol version allows:
//
//	version     initialize  sessions  batches  version header  Mcp-Method, Mcp-Name  _meta version  resumable SSE
//	2026-07-28  no          no        no       required        required              required       no
//	2025-11-25  yes         yes       no       required        checked if sent       checked if sent  yes
//	2025-06-18  yes         yes       no       required        checked if sent       checked if sent  yes
//	2025-03-26  yes         yes       yes      optional        checked if sent       checked if sent  yes
//	2024-11-05  yes         yes       no       optional        checked if sent       checked if sent  yes
//
// The version in force for a POST is its Mcp-Protocol-Version header, or for an initialize the version
// its params ask for, or 2025-03-26 when neither says (the transport specification's rule). A
// version the table lacks is refused (CodeUnsupportedProtocolVersion, with the supported versions in
// the error's data), in the header and in initialize alike: the engine cannot apply rules it does not
// have. 2024-11-05 is refused batches although its server in the SDK takes them: JSON-RPC batching
// entered MCP in 2025-03-26 and left in 2025-06-18. Mcp-Param-* headers (SEP-2243) depend on the
// tool's input schema, which ParsePost does not know: it checks only that they come with a single
// tools/call and are well-formed, and CheckParamHeaders checks them against the pinned definition
// (ParamHeaders rebuilds them from the checked body for the upstream request).
//
// # Residual risks
//
//   - Header values are compared as sent or once decoded from =?base64?...?=; a server that decodes
//     them differently (another alphabet, or none) could read another name than the body's. The
//     engine should send StandardHeaders' and ParamHeaders' values, built from the checked body,
//     rather than the client's headers.
//   - The canonical argument encoding (ArgsDigest) sorts member names by bytes, not by UTF-16 code
//     units as RFC 8785 does, and keeps numbers as written: 1 and 1.0 digest differently, so an
//     approval given for one does not cover the other (the safe direction).
//   - Results rewritten through the SDK's types lose members the SDK does not know and renormalise
//     numbers inside tool schemas (float64); only data ever goes missing, never appears.
//   - ServerMessages writes a JSON body once, at its end (the engine drops the upstream
//     Content-Length); an SSE event is flushed as soon as it is read and checked. An event whose type
//     is not "message" loses its data (clients ignore it); a dropped message leaves its event id, so
//     that a resuming client does not skip messages the server would replay.
//   - Error responses without an id (a server's answer to a malformed request, usually with a 4xx
//     status) are refused by ServerMessages like any other unreadable message; the engine answers
//     those with its own error.
//   - jsontext and the SDK's decoder agree on the JSON the checks accept; a disagreement between them
//     in what they accept shows as "decodes ambiguously" and is refused.
package wire
