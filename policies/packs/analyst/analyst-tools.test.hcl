# The analyst on the MCP server "tools" (target "tools" of the demo catalog).
catalog_file = "../../catalog.hcl"

test "connects to the MCP server" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "connect"
  target    = "tools"
  expect    = "allow"
  reasons   = ["analyst-tools-connect"]
}

test "looks a customer up, and sees get_customer listed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "get_customer"
  args      = { id = 1 }
  expect    = "allow"
  reasons   = ["analyst-tools-get-customer"]
  listed    = true
}

test "reads the customer's email hashed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:read-unmasked"
  target    = "tools"
  tool      = "get_customer"
  field     = "$.email"
  args      = { id = 1 }
  expect    = "deny"
  reasons   = ["analyst-tools-pii-hashed"]
  obligations { mask = "hash" }
}

test "reads the customer's ssn hashed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:read-unmasked"
  target    = "tools"
  tool      = "get_customer"
  field     = "$.ssn"
  args      = { id = 1 }
  expect    = "deny"
  obligations { mask = "hash" }
}

test "lists orders, with or without a customer" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "list_orders"
  args      = { customer_id = 1, limit = 10 }
  expect    = "allow"
  reasons   = ["analyst-tools-list-orders"]
  listed    = true
}

test "queries the orders table" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { table = "orders", limit = 5 }
  expect    = "allow"
  reasons   = ["analyst-tools-query-orders"]
}

test "may not query the customers table, though query stays listed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { table = "customers" }
  expect    = "deny"
  reasons   = []
  listed    = true
}

test "may not query without naming the table" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { limit = 5 }
  expect    = "deny"
}

test "refunds nothing, and refund is not listed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "refund"
  args      = { order_id = 7, amount = 5, reason = "damaged" }
  expect    = "deny"
  reasons   = []
  listed    = false
}

test "sends an email only once approved" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "send_email"
  args      = { to = "a@example.com", subject = "Your order", body = "Shipped." }
  expect    = "allow"
  reasons   = ["analyst-tools-send-email"]
  obligations { approval = "required" }
  listed    = true
}

test "an email a person approved is sent" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "send_email"
  args      = { to = "a@example.com", subject = "Your order", body = "Shipped." }
  approval  = "approved"
  expect    = "allow"
  reasons   = ["analyst-tools-send-email-approved"]
}

test "an email a person denied is refused" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "send_email"
  args      = { to = "a@example.com", subject = "Your order", body = "Shipped." }
  approval  = "denied"
  expect    = "deny"
}

test "may not summarize, and summarize is not listed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "summarize"
  args      = { text = "hello" }
  expect    = "deny"
  reasons   = []
  listed    = false
}

test "asks its user a question" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "ask_user"
  args      = { question = "Which customer?" }
  expect    = "allow"
}

test "the server may elicit from the analyst" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:elicitation"
  target    = "tools"
  expect    = "allow"
  reasons   = ["analyst-tools-elicitation"]
}

test "the server may not sample the analyst's model" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:sampling"
  target    = "tools"
  expect    = "deny"
  reasons   = []
}

test "a tool the catalog does not declare is neither callable nor listed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "delete_everything"
  expect    = "deny"
  listed    = false
}

test "reads no resource and gets no prompt" {
  principal    = "spiffe://example.org/agent/analyst"
  selectors    = ["agent:name:analyst"]
  action       = "mcp:read"
  target       = "tools"
  resource_uri = "shop://reports/daily"
  expect       = "deny"
  listed       = false
}

test "uses the tools role" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "credential:use"
  target    = "tools"
  role      = "tools-read"
  expect    = "allow"
}
