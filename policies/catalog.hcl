# The catalog and groups of the demo database "shop", of the demo API "api" (an http target in
# front of the shop's customers and orders) and of the demo MCP server "tools": what the policy packs talk about besides the caller. The pack tests use this file (catalog_file), and the test stack and the demo put the same
# blocks into the broker's configuration.
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
  credential_role "shop-admin" { covers = ["sql:ddl", "sql:lock"] }
}

catalog "api" {
  kind        = "http"
  environment = "dev"
  route "GET /v1/customers/{id}" {
    tags = ["pii"]
    field "$.email" { tags = ["pii"] }
    field "$.ssn"   { tags = ["pii", "sensitive"] }
  }
  route "GET /v1/customers/{id}/events" { # text/event-stream; each event's data is JSON
    tags = ["pii"]
    field "$.email" { tags = ["pii"] }
    field "$.ssn"   { tags = ["pii", "sensitive"] }
  }
  route "GET /v1/orders/{id}" {}
  route "DELETE /v1/orders/{id}" {}
  route "POST /v1/refunds" {
    body = { order_id = "Long", amount = "Long", reason = "String" } # declared JSON body members
  }
  route "GET /v1/customers" {
    query = ["limit"] # declared query parameters
    field "$.items[*].email" { tags = ["pii"] }
    field "$.items[*].ssn"   { tags = ["pii", "sensitive"] }
  }
  credential_role "api-read"  { covers = ["http:get"] }
  credential_role "api-write" { covers = ["http:get", "http:post", "http:delete"] }
}

group "analysts" { selectors = ["agent:name:analyst"] }
group "support" { selectors = ["agent:name:support"] }
group "migrators" { selectors = ["agent:name:migrator"] }

# The demo's MCP server (examples/mcpshop), target "tools": its tools' input schemas come from the pin
# file (`svidbroker mcp pin tools --accept` refreshes it), and type context.args. Tools not listed
# here are still decided (as Tool entities without tags); only these carry tags and masked fields.
catalog "tools" {
  kind        = "mcp"
  environment = "dev"
  pins        = "tools.pins.json"
  tool "get_customer" {
    tags = ["pii"]
    text = "json" # each content text is JSON: its fields are masked as structuredContent's
    field "$.email" { tags = ["pii"] }
    field "$.ssn"   { tags = ["pii", "sensitive"] }
  }
  tool "refund" { tags = ["writes"] }
  tool "send_email" { tags = ["external"] }
  # The MCP shop takes the API-token engine's tokens: api-read calls its reading tools, api-write
  # also refund and send_email. Both roles cover mcp:call, so credential:use alone tells them apart.
  credential_role "tools-read"  {
    covers     = ["mcp:call"]
    vault_role = "api-read"
  }
  credential_role "tools-write" {
    covers     = ["mcp:call"]
    vault_role = "api-write"
  }
}
