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
