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
