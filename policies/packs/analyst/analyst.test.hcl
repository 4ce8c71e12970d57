# The demo database and groups, shared by every test file.
catalog_file = "../../catalog.hcl"

test "connects" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "connect"
  target    = "shop"
  expect    = "allow"
  reasons   = ["analyst-connect"]
}

test "selects, with metadata recorded" {
  principal   = "spiffe://example.org/agent/analyst"
  selectors   = ["agent:name:analyst"]
  action      = "sql:select"
  target      = "shop"
  table       = "public.customers"
  expect      = "allow"
  reasons     = ["analyst-select"]
  obligations {
    record = "metadata"
  }
}

test "does not update" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:update"
  target    = "shop"
  table     = "public.orders"
  expect    = "deny"
  reasons   = []
}

test "does not run DDL" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:ddl"
  target    = "shop"
  expect    = "deny"
}

test "reads order totals in clear" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "column:read-unmasked"
  target    = "shop"
  table     = "public.orders"
  column    = "total"
  expect    = "allow"
}

test "email is hashed" {
  principal   = "spiffe://example.org/agent/analyst"
  selectors   = ["agent:name:analyst"]
  action      = "column:read-unmasked"
  target      = "shop"
  table       = "public.customers"
  column      = "email"
  expect      = "deny"
  reasons     = ["analyst-pii-hashed"]
  obligations {
    mask = "hash"
  }
}

test "uses the read-only role" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "credential:use"
  target    = "shop"
  role      = "shop-read"
  expect    = "allow"
}

test "not the write role" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "credential:use"
  target    = "shop"
  role      = "shop-write"
  expect    = "deny"
}

test "another agent with the analyst's name but not its selectors gets nothing" {
  principal = "spiffe://example.org/agent/analyst-evil"
  selectors = ["agent:name:analyst-evil"]
  action    = "connect"
  target    = "shop"
  expect    = "deny"
}

test "runs transactions and session utilities" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:transaction"
  target    = "shop"
  expect    = "allow"
  reasons   = ["analyst-session-statements"]
}

test "reads tables the catalog does not list" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:select"
  target    = "shop"
  table     = "public.not_in_the_catalog"
  expect    = "allow"
}

test "calls a stable function that runs with its own privileges" {
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

test "does not call a volatile function" {
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
  reasons   = []
}

test "does not call a SECURITY DEFINER function, even a stable one" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
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
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:lock"
  target    = "shop"
  table     = "public.orders"
  expect    = "deny"
  reasons   = []
}

test "does not take advisory locks or prepare transactions" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "sql:lock"
  target    = "shop"
  expect    = "deny"
  reasons   = []
}

test "joins on personal data by equality with another column" {
  principal   = "spiffe://example.org/agent/analyst"
  selectors   = ["agent:name:analyst"]
  action      = "column:use-masked"
  target      = "shop"
  table       = "public.customers"
  column      = "email"
  use         = "join"
  equality    = true
  with_column = "public.customers.email"
  expect      = "allow"
  reasons     = ["analyst-pii-equality-joins"]
}

test "does not join on personal data by anything but equality with a column" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "column:use-masked"
  target    = "shop"
  table     = "public.customers"
  column    = "email"
  use       = "join"
  expect    = "deny"
  reasons   = []
}

test "does not filter on personal data" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "column:use-masked"
  target    = "shop"
  table     = "public.customers"
  column    = "ssn"
  use       = "where"
  expect    = "deny"
}

test "does not compare personal data with another column outside a join" {
  principal   = "spiffe://example.org/agent/analyst"
  selectors   = ["agent:name:analyst"]
  action      = "column:use-masked"
  target      = "shop"
  table       = "public.customers"
  column      = "email"
  use         = "where"
  equality    = true
  with_column = "public.customers.email"
  expect      = "deny"
}

test "does not sort, group or compute on personal data" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "column:use-masked"
  target    = "shop"
  table     = "public.customers"
  column    = "email"
  use       = "order"
  expect    = "deny"
}

test "does not join personal data with a column it reads in clear" {
  principal   = "spiffe://example.org/agent/analyst"
  selectors   = ["agent:name:analyst"]
  action      = "column:use-masked"
  target      = "shop"
  table       = "public.customers"
  column      = "ssn"
  use         = "join"
  equality    = true
  with_column = "public.orders.id"
  expect      = "deny"
  reasons     = []
}

# The API (target "api"), as the database.

test "connects to the API" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "connect"
  target    = "api"
  expect    = "allow"
  reasons   = ["analyst-api-connect"]
}

test "reads a customer through the API" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  expect    = "allow"
  reasons   = ["analyst-api-read"]
  obligations {
    record = "metadata"
  }
}

test "reads orders through the API" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/orders/{id}"
  params    = { id = "7" }
  expect    = "allow"
  reasons   = ["analyst-api-read"]
}

test "the API's email is hashed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.email"
  expect    = "deny"
  reasons   = ["analyst-api-pii-hashed"]
  obligations {
    mask = "hash"
  }
}

test "the API's ssn is hashed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.ssn"
  expect    = "deny"
  reasons   = ["analyst-api-pii-hashed"]
  obligations {
    mask = "hash"
  }
}

test "ssn in an event stream is hashed" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}/events"
  params    = { id = "1" }
  field     = "$.ssn"
  expect    = "deny"
  reasons   = ["analyst-api-pii-hashed"]
  obligations {
    mask = "hash"
  }
}

test "cannot delete an order" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  expect    = "deny"
  reasons   = []
}

test "cannot post a refund" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "http:post"
  target    = "api"
  route     = "POST /v1/refunds"
  body      = { order_id = 7, amount = 25, reason = "damaged" }
  expect    = "deny"
  reasons   = []
}

test "cannot delete an order even when approved" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  approval  = "approved"
  expect    = "deny"
  reasons   = []
}

test "uses the API's read role" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "credential:use"
  target    = "api"
  role      = "api-read"
  expect    = "allow"
  reasons   = ["analyst-api-read-role"]
}

test "not the API's write role" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "credential:use"
  target    = "api"
  role      = "api-write"
  expect    = "deny"
  reasons   = []
}
