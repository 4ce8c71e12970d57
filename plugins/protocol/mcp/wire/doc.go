// Package wire is the MCP engine's message layer: it checks what a client POSTs (ParsePost), answers
// refusals as JSON-RPC errors (Error, WriteError), relays a server's application/json or
// text/event-stream response message by message so that the engine can drop, rewrite or answer each
// (ServerMessages), and gives the engine typed views of the messages it decides on (CallParams,
// ArgsDigest, DecodeList, DecodeToolResult) on the go-sdk's jsonrpc and mcp types.
//
// It does no I/O beyond the reader and writer it is handed.
package wire
