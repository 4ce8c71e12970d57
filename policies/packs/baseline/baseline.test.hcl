# The baseline alone: nothing is permitted.
catalog "shop" {
  kind        = "postgres"
  environment = "dev"
  table "public.customers" {
    tags = ["pii"]
    column "id" {}
    column "name" {}
    column "email" { tags = ["pii"] }
    column "ssn" { tags = ["pii", "sensitive"] }
  }
  table "public.orders" {
    column "id" {}
    column "customer_id" {}
    column "total" {}
    column "created_at" {}
  }
  credential_role "shop-read" { covers = ["sql:select"] }
  credential_role "shop-write" { covers = ["sql:insert", "sql:update", "sql:delete"] }
  credential_role "shop-admin" { covers = ["sql:ddl"] }
}

group "analysts" { selectors = ["agent:name:analyst"] }
group "support" { selectors = ["agent:name:support"] }
group "migrators" { selectors = ["agent:name:migrator"] }

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
