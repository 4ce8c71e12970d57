package proxy

// Request is an MCP message as policy decides it (authz.MCPRequest's fields).
type Request struct {
	Target  string
	Method  string         // "tools/call", "resources/read", "prompts/get", "sampling/createMessage", ...
	Name    string         // tool name, resource URI or prompt name; "" for server requests
	Args    map[string]any // tools/call arguments decoded with UseNumber
	Version string         // the session's protocol version
}

// CatalogTool is a tool block of an mcp target's catalog.
type CatalogTool struct {
	Name   string
	Tags   []string
	Text   string // "json": each content[].text of its results is JSON, and Fields apply to it
	Fields []CatalogField
}

// CatalogField is a field of a tool's results: a JSON path into structuredContent and, for a
// text="json" tool, into each text's JSON.
type CatalogField struct {
	Path string
	Tags []string
}
