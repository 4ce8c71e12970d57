# The baseline alone: nothing is permitted.
# The demo database and groups, shared by every test file.
catalog_file = "../../catalog.hcl"

test "no connection" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "connect"
  target    = "shop"
  expect    = "deny"
  reasons   = []
}

test "no select" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:select"
  target    = "shop"
  table     = "public.orders"
  expect    = "deny"
}

test "unattested caller, forbidden by name" {
  principal = "spiffe://example.org/agent/analyst"
  attested  = false
  action    = "connect"
  target    = "shop"
  expect    = "deny"
  reasons   = ["baseline-attested-only"]
}

test "admin SQL, forbidden by name" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:admin"
  target    = "shop"
  expect    = "deny"
  reasons   = ["baseline-no-admin-sql"]
}

test "a volatile function is a write no pack can check" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:call-function"
  target    = "shop"
  function {
    name             = "public.purge_orders"
    volatility       = "volatile"
    security_definer = false
    language         = "plpgsql"
    owner            = "shop_owner"
  }
  expect    = "deny"
  reasons   = ["baseline-no-writing-functions"]
}

test "so is a SECURITY DEFINER one" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:call-function"
  target    = "shop"
  function {
    name             = "public.lookup_as_owner"
    volatility       = "immutable"
    security_definer = true
    language         = "plpgsql"
    owner            = "shop_owner"
  }
  expect    = "deny"
  reasons   = ["baseline-no-writing-functions"]
}

# The API (target "api"), as the database.

test "the intruder does not reach the API" {
  principal = "spiffe://example.org/agent/intruder"
  selectors = ["agent:name:intruder"]
  action    = "connect"
  target    = "api"
  expect    = "deny"
  reasons   = []
}

test "the intruder reads no customer" {
  principal = "spiffe://example.org/agent/intruder"
  selectors = ["agent:name:intruder"]
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  expect    = "deny"
  reasons   = []
}

test "the intruder deletes no order" {
  principal = "spiffe://example.org/agent/intruder"
  selectors = ["agent:name:intruder"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  expect    = "deny"
  reasons   = []
}

test "the intruder reads no field in clear" {
  principal = "spiffe://example.org/agent/intruder"
  selectors = ["agent:name:intruder"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.ssn"
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

test "an unattested caller calls no route, forbidden by name" {
  principal = "spiffe://example.org/agent/analyst"
  attested  = false
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  expect    = "deny"
  reasons   = ["baseline-attested-only"]
}

test "the agent's owner cannot approve its request, even in the approving group" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator", "agent:owner:owner@example.com"]
  action    = "approve"
  target    = "shop"
  approver {
    email  = "owner@example.com"
    groups = ["dba"]
  }
  held {
    action   = "sql"
    policies = ["migrator-ddl-hold"]
  }
  expect  = "deny"
  reasons = ["baseline-owner-never-approves"]
}

test "nobody approves a request of an unattested caller" {
  principal = "spiffe://example.org/agent/migrator"
  attested  = false
  action    = "approve"
  target    = "shop"
  approver {
    email  = "approver@example.com"
    groups = ["dba"]
  }
  held {
    action   = "sql"
    policies = ["migrator-ddl-hold"]
  }
  expect  = "deny"
  reasons = ["baseline-approve-attested-only"]
}
