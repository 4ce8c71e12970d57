# All packs together, as the demo runs them: the baseline's forbids hold over every other pack.
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
