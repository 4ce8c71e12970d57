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
