# All packs together, as the demo runs them: the baseline's forbids hold over every other pack.
# The demo database and groups, shared by every test file.
catalog_file = "../catalog.hcl"

test "analyst connects" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "connect"
  target    = "shop"
  expect    = "allow"
}

test "analyst without attestation is refused despite its pack" {
  principal = "spiffe://example.org/agent/analyst"
  attested  = false
  action    = "connect"
  target    = "shop"
  expect    = "deny"
  reasons   = ["baseline-attested-only"]
}

test "migrator admin SQL is forbidden even though its pack holds DDL" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:admin"
  target    = "shop"
  expect    = "deny"
  reasons   = ["baseline-no-admin-sql"]
}

test "support cannot use the migrator's role" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "credential:use"
  target    = "shop"
  role      = "shop-admin"
  expect    = "deny"
}

test "a workload in no group is denied" {
  principal = "spiffe://example.org/agent/stranger"
  selectors = ["agent:name:stranger"]
  action    = "connect"
  target    = "shop"
  expect    = "deny"
  reasons   = []
}

test "with every pack loaded, the analyst calls a stable function" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:call-function"
  target    = "shop"
  function {
    name             = "public.order_total"
    volatility       = "stable"
    security_definer = false
    language         = "plpgsql"
    owner            = "shop_owner"
  }
  expect    = "allow"
  reasons   = ["analyst-read-functions"]
}

test "with every pack loaded, the baseline refuses a SECURITY DEFINER function to the migrator" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:call-function"
  target    = "shop"
  function {
    name             = "public.delete_orders"
    volatility       = "volatile"
    security_definer = true
    language         = "plpgsql"
    owner            = "shop_owner"
  }
  expect    = "deny"
  reasons   = ["baseline-no-writing-functions"]
}

test "with every pack loaded, support may not lock rows" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "sql:lock"
  target    = "shop"
  table     = "public.orders"
  expect    = "deny"
  reasons   = []
}

test "with every pack loaded, the migrator may lock rows" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:lock"
  target    = "shop"
  table     = "public.orders"
  expect    = "allow"
  reasons   = ["migrator-locks"]
}

# The API (target "api"), as the database.

test "the intruder is refused by the API as by the database" {
  principal = "spiffe://example.org/agent/intruder"
  selectors = ["agent:name:intruder"]
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  expect    = "deny"
  reasons   = []
}

test "the intruder gets no API credential" {
  principal = "spiffe://example.org/agent/intruder"
  selectors = ["agent:name:intruder"]
  action    = "credential:use"
  target    = "api"
  role      = "api-read"
  expect    = "deny"
  reasons   = []
}

test "analyst without attestation reads no customer despite its pack" {
  principal = "spiffe://example.org/agent/analyst"
  attested  = false
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  expect    = "deny"
  reasons   = ["baseline-attested-only"]
}

test "analyst deletes no order under all packs" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  expect    = "deny"
  reasons   = []
}

test "support reads the ssn partially masked under all packs" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.ssn"
  expect    = "deny"
  reasons   = ["support-api-pii-partial"]
  obligations {
    mask = "partial"
  }
}

test "migrator's refund waits for approval under all packs" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "http:post"
  target    = "api"
  route     = "POST /v1/refunds"
  body      = { order_id = 7, amount = 25, reason = "damaged" }
  expect    = "allow"
  reasons   = ["migrator-api-write-hold"]
  obligations {
    approval = "required"
    record = "full"
  }
}

# The MCP server (target "tools"), with every pack loaded.

test "with every pack loaded, no caller gets the client's roots" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:roots"
  target    = "tools"
  expect    = "deny"
  reasons   = ["baseline-no-roots"]
}

test "with every pack loaded, an unattested analyst sees no tool" {
  principal = "spiffe://example.org/agent/analyst"
  attested  = false
  action    = "mcp:call"
  target    = "tools"
  tool      = "get_customer"
  args      = { id = 1 }
  expect    = "deny"
  reasons   = ["baseline-attested-only"]
  listed    = false
}

test "with every pack loaded, the migrator calls no tool" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "list_orders"
  expect    = "deny"
  reasons   = []
  listed    = false
}

test "with every pack loaded, nobody summarizes" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "summarize"
  args      = { text = "hello" }
  expect    = "deny"
  reasons   = []
  listed    = false
}

test "with every pack loaded, support's large refund is held" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "refund"
  args      = { order_id = 7, amount = 500, reason = "damaged" }
  expect    = "allow"
  obligations {
    approval = "required"
    record   = "full"
  }
}

test "with every pack loaded, the analyst's query of customers is refused" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "mcp:call"
  target    = "tools"
  tool      = "query"
  args      = { table = "customers" }
  expect    = "deny"
  listed    = true
}
