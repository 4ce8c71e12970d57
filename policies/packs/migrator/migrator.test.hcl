# The demo database and groups, shared by every test file.
catalog_file = "../../catalog.hcl"

test "DDL is held for approval" {
  principal   = "spiffe://example.org/agent/migrator"
  selectors   = ["agent:name:migrator"]
  action      = "sql:ddl"
  target      = "shop"
  table       = "public.orders"
  expect      = "allow"
  reasons     = ["migrator-ddl-hold"]
  obligations {
    approval = "required"
    record   = "full"
  }
}

test "approved DDL runs" {
  principal   = "spiffe://example.org/agent/migrator"
  selectors   = ["agent:name:migrator"]
  action      = "sql:ddl"
  target      = "shop"
  table       = "public.orders"
  approval    = "approved"
  expect      = "allow"
  reasons     = ["migrator-ddl-approved"]
  obligations {
    record = "full"
  }
}

test "denied approval stops DDL" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:ddl"
  target    = "shop"
  approval  = "denied"
  expect    = "deny"
}

test "expired approval stops DDL" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:ddl"
  target    = "shop"
  approval  = "expired"
  expect    = "deny"
}

test "email redacted" {
  principal   = "spiffe://example.org/agent/migrator"
  selectors   = ["agent:name:migrator"]
  action      = "column:read-unmasked"
  target      = "shop"
  table       = "public.customers"
  column      = "email"
  expect      = "deny"
  obligations {
    mask = "redact"
  }
}

test "no writes to rows" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:update"
  target    = "shop"
  table     = "public.orders"
  expect    = "deny"
}

test "runs transactions and session utilities" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:transaction"
  target    = "shop"
  expect    = "allow"
  reasons   = ["migrator-session-statements"]
}

test "reads tables the catalog does not list" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:select"
  target    = "shop"
  table     = "public.not_in_the_catalog"
  expect    = "allow"
}

# Its sessions run as shop-admin, the one role it may use, so that approved DDL runs in the database.
test "uses the admin role" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "credential:use"
  target    = "shop"
  role      = "shop-admin"
  expect    = "allow"
  reasons   = ["migrator-admin-role"]
}

test "not the write role" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "credential:use"
  target    = "shop"
  role      = "shop-write"
  expect    = "deny"
}

test "calls a stable function" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
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
  reasons   = ["migrator-read-functions"]
}

test "does not call a volatile function on its own pack" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
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

test "locks the tables it migrates" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:lock"
  target    = "shop"
  table     = "public.orders"
  expect    = "allow"
  reasons   = ["migrator-locks"]
}

test "takes advisory locks" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "sql:lock"
  target    = "shop"
  expect    = "allow"
  reasons   = ["migrator-locks"]
}

# The API (target "api"), as the database.

test "connects to the API" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "connect"
  target    = "api"
  expect    = "allow"
  reasons   = ["migrator-api-connect"]
}

test "reads through the API, fully recorded" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "http:get"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  expect    = "allow"
  reasons   = ["migrator-api-read"]
  obligations {
    record = "full"
  }
}

test "deleting an order waits for approval" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  expect    = "allow"
  reasons   = ["migrator-api-write-hold"]
  obligations {
    approval = "required"
    record = "full"
  }
}

test "posting a refund waits for approval" {
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

test "an approved delete runs" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  approval  = "approved"
  expect    = "allow"
  reasons   = ["migrator-api-write-approved"]
  obligations {
    record = "full"
  }
}

test "a refused delete does not run" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "http:delete"
  target    = "api"
  route     = "DELETE /v1/orders/{id}"
  params    = { id = "7" }
  approval  = "denied"
  expect    = "deny"
  reasons   = []
}

test "an expired refund approval does not run" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "http:post"
  target    = "api"
  route     = "POST /v1/refunds"
  body      = { order_id = 7, amount = 25, reason = "damaged" }
  approval  = "expired"
  expect    = "deny"
  reasons   = []
}

test "the API's ssn is redacted" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.ssn"
  expect    = "deny"
  reasons   = ["migrator-api-pii-redacted"]
  obligations {
    mask = "redact"
  }
}

test "uses the API's write role" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator"]
  action    = "credential:use"
  target    = "api"
  role      = "api-write"
  expect    = "allow"
  reasons   = ["migrator-api-write-role"]
}

test "a dba approves the migrator's held DDL" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator", "agent:owner:owner@example.com"]
  action    = "approve"
  target    = "shop"
  approver {
    email  = "approver@example.com"
    groups = ["dba", "security"]
  }
  held {
    action   = "sql"
    text     = "ALTER TABLE orders ADD COLUMN note text"
    policies = ["migrator-ddl-hold"]
  }
  expect  = "allow"
  reasons = ["migrator-dba-approves-ddl"]
}

test "an engineer outside the dba group cannot approve DDL" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator", "agent:owner:owner@example.com"]
  action    = "approve"
  target    = "shop"
  approver {
    email  = "alice@example.com"
    groups = ["engineering"]
  }
  held {
    action   = "sql"
    policies = ["migrator-ddl-hold"]
  }
  expect  = "deny"
  reasons = []
}

test "a dba approves nothing a migrator policy did not hold" {
  principal = "spiffe://example.org/agent/analyst"
  selectors = ["agent:name:analyst"]
  action    = "approve"
  target    = "shop"
  approver {
    email  = "approver@example.com"
    groups = ["dba"]
  }
  held {
    action   = "sql"
    policies = ["some-other-hold"]
  }
  expect  = "deny"
  reasons = []
}

test "a dba approves the migrator's held API delete" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator", "agent:owner:owner@example.com"]
  action    = "approve"
  target    = "api"
  approver {
    email  = "approver@example.com"
    groups = ["dba", "security"]
  }
  held {
    action   = "http"
    text     = "DELETE /v1/orders/81"
    policies = ["migrator-api-write-hold"]
  }
  expect  = "allow"
  reasons = ["migrator-dba-approves-api-writes"]
}

test "an engineer outside the dba group cannot approve an API delete" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator", "agent:owner:owner@example.com"]
  action    = "approve"
  target    = "api"
  approver {
    email  = "alice@example.com"
    groups = ["engineering"]
  }
  held {
    action   = "http"
    policies = ["migrator-api-write-hold"]
  }
  expect  = "deny"
  reasons = []
}

test "the API approval covers no held SQL" {
  principal = "spiffe://example.org/agent/migrator"
  selectors = ["agent:name:migrator", "agent:owner:owner@example.com"]
  action    = "approve"
  target    = "api"
  approver {
    email  = "approver@example.com"
    groups = ["dba"]
  }
  held {
    action   = "sql"
    policies = ["migrator-api-write-hold"]
  }
  expect  = "deny"
  reasons = []
}
