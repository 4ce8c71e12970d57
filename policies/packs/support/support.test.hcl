# The demo database and groups, shared by every test file.
catalog_file = "../../catalog.hcl"

test "reads customers, fully recorded" {
  principal   = "spiffe://example.org/agent/support"
  selectors   = ["agent:name:support"]
  action      = "sql:select"
  target      = "shop"
  table       = "public.customers"
  expect      = "allow"
  obligations {
    record = "full"
  }
}

test "ssn is partially masked" {
  principal   = "spiffe://example.org/agent/support"
  selectors   = ["agent:name:support"]
  action      = "column:read-unmasked"
  target      = "shop"
  table       = "public.customers"
  column      = "ssn"
  expect      = "deny"
  reasons     = ["support-pii-partial"]
  obligations {
    mask = "partial"
  }
}

test "names in clear" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "column:read-unmasked"
  target    = "shop"
  table     = "public.customers"
  column    = "name"
  expect    = "allow"
}

test "does not delete" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "sql:delete"
  target    = "shop"
  table     = "public.customers"
  expect    = "deny"
}

test "runs transactions and session utilities" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "sql:transaction"
  target    = "shop"
  expect    = "allow"
  reasons   = ["support-session-statements"]
}

test "reads tables the catalog does not list" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "sql:select"
  target    = "shop"
  table     = "public.not_in_the_catalog"
  expect    = "allow"
}

test "uses the read-only role" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "credential:use"
  target    = "shop"
  role      = "shop-read"
  expect    = "allow"
  reasons   = ["support-read-role"]
}

test "not the write role" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "credential:use"
  target    = "shop"
  role      = "shop-write"
  expect    = "deny"
}

test "calls a stable function that runs with its own privileges" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
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
  reasons   = ["support-read-functions"]
}

test "does not call a volatile function" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
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
  reasons   = []
}

test "does not call a SECURITY DEFINER function, even a stable one" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "sql:call-function"
  target    = "shop"
  function {
    name             = "public.lookup_as_owner"
    volatility       = "stable"
    security_definer = true
    language         = "plpgsql"
    owner            = "shop_owner"
  }
  expect    = "deny"
  reasons   = []
}

test "does not lock rows (SELECT ... FOR UPDATE)" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "sql:lock"
  target    = "shop"
  table     = "public.orders"
  expect    = "deny"
  reasons   = []
}

test "does not take advisory locks or prepare transactions" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "sql:lock"
  target    = "shop"
  expect    = "deny"
  reasons   = []
}

test "does not filter on partially masked data" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "column:use-masked"
  target    = "shop"
  table     = "public.customers"
  column    = "ssn"
  use       = "where"
  expect    = "deny"
  reasons   = []
}

test "does not compute on partially masked data" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "column:use-masked"
  target    = "shop"
  table     = "public.customers"
  column    = "email"
  use       = "function"
  expect    = "deny"
}

# The API (target "api"), as the database.

test "connects to the API" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "connect"
  target    = "api"
  expect    = "allow"
  reasons   = ["support-api-connect"]
}

test "reads a customer through the API, fully recorded" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  expect    = "allow"
  reasons   = ["support-api-read"]
  obligations {
    record = "full"
  }
}

test "lists customers a page at a time" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers"
  query     = { limit = "5" }
  expect    = "allow"
  reasons   = ["support-api-read"]
}

test "the API's ssn is partially masked" {
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

test "the API's email is partially masked" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.email"
  expect    = "deny"
  reasons   = ["support-api-pii-partial"]
  obligations {
    mask = "partial"
  }
}

test "ssn in a list is partially masked" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers"
  field     = "$.items[*].ssn"
  expect    = "deny"
  reasons   = ["support-api-pii-partial"]
  obligations {
    mask = "partial"
  }
}

test "does not delete orders through the API" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  expect    = "deny"
  reasons   = []
}

test "does not post refunds" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "http:post"
  target    = "api"
  route     = "POST /v1/refunds"
  body      = { order_id = 7, amount = 25, reason = "damaged" }
  expect    = "deny"
  reasons   = []
}

test "uses the API's read role" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "credential:use"
  target    = "api"
  role      = "api-read"
  expect    = "allow"
  reasons   = ["support-api-read-role"]
}

test "not the API's write role" {
  principal = "spiffe://example.org/agent/support"
  selectors = ["agent:name:support"]
  action    = "credential:use"
  target    = "api"
  role      = "api-write"
  expect    = "deny"
  reasons   = []
}
