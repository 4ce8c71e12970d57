# The baseline alone on the MCP server: nothing is permitted, roots least of all.
catalog_file = "../../catalog.hcl"

test "no server learns the client's roots" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:roots"
  target    = "tools"
  expect    = "deny"
  reasons   = ["baseline-no-roots"]
}

test "the baseline lists no tool" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "get_customer"
  args      = { id = 1 }
  expect    = "deny"
  listed    = false
}
