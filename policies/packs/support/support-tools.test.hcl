# Support on the MCP server "tools" (target "tools" of the demo catalog).
catalog_file = "../../catalog.hcl"

test "looks a customer up, the ssn partially masked" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:read-unmasked"
  target    = "tools"
  tool      = "get_customer"
  field     = "$.ssn"
  args      = { id = 1 }
  expect    = "deny"
  reasons   = ["support-tools-pii-partial"]
  obligations { mask = "partial" }
}

test "calls get_customer" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "get_customer"
  args      = { id = 1 }
  expect    = "allow"
  reasons   = ["support-tools-read"]
  listed    = true
}

test "refunds a small amount on its own" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "refund"
  args      = { order_id = 7, amount = 99, reason = "damaged" }
  expect    = "allow"
  reasons   = ["support-tools-small-refunds"]
  obligations { record = "full" }
  listed    = true
}

test "a refund of 100 waits for a person" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "refund"
  args      = { order_id = 7, amount = 100, reason = "damaged" }
  expect    = "allow"
  reasons   = ["support-tools-large-refunds-held"]
  obligations {
    approval = "required"
    record   = "full"
  }
}

test "a refund of 100 a person approved runs" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "refund"
  args      = { order_id = 7, amount = 100, reason = "damaged" }
  approval  = "approved"
  expect    = "allow"
  reasons   = ["support-tools-large-refunds-approved"]
  obligations { record = "full" }
}

test "a refund of 100 a person denied is refused" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "refund"
  args      = { order_id = 7, amount = 100, reason = "damaged" }
  approval  = "denied"
  expect    = "deny"
}

test "a refund without an amount is refused" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "refund"
  args      = { order_id = 7, reason = "damaged" }
  expect    = "deny"
  reasons   = []
}

test "sends an email only once approved" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "send_email"
  args      = { to = "a@example.com", subject = "Refund", body = "Done." }
  expect    = "allow"
  obligations { approval = "required" }
}

test "an email a person approved is sent" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "send_email"
  args      = { to = "a@example.com", subject = "Refund", body = "Done." }
  approval  = "approved"
  expect    = "allow"
  reasons   = ["support-tools-send-email-approved"]
}

test "an email whose approval expired is refused" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "send_email"
  args      = { to = "a@example.com", subject = "Refund", body = "Done." }
  approval  = "expired"
  expect    = "deny"
}

test "may not query, and query is not listed" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { table = "orders" }
  expect    = "deny"
  listed    = false
}

test "may not summarize" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "summarize"
  args      = { text = "hello" }
  expect    = "deny"
  listed    = false
}

test "drafts a reply with its own model" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "draft_reply"
  args      = { customer_id = 1, message = "Where is my order?" }
  expect    = "allow"
}

test "the server may sample support's model" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:sampling"
  target    = "tools"
  expect    = "allow"
  reasons   = ["support-tools-sampling"]
}

test "the server may not elicit from support" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:elicitation"
  target    = "tools"
  expect    = "deny"
}

test "a support lead approves a large refund" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "approve"
  target    = "tools"
  approver {
    email  = "lead@example.com"
    groups = ["support-leads"]
  }
  held {
    action   = "mcp"
    policies = ["support-tools-large-refunds-held"]
  }
  expect  = "allow"
  reasons = ["support-tools-leads-approve-refunds"]
}

test "a support lead cannot approve an email" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "approve"
  target    = "tools"
  approver {
    email  = "lead@example.com"
    groups = ["support-leads"]
  }
  held {
    action   = "mcp"
    policies = ["support-tools-send-email"]
  }
  expect  = "deny"
  reasons = []
}

test "security approves an email" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "approve"
  target    = "tools"
  approver {
    email  = "approver@example.com"
    groups = ["security"]
  }
  held {
    action   = "mcp"
    policies = ["support-tools-send-email"]
  }
  expect  = "allow"
  reasons = ["support-tools-security-approves-email"]
}
