# svidbroker's configuration in Kubernetes (the ConfigMap svidbroker-config). Paths are the
# Deployment's mounts: edit both together; deploy/kubernetes_test.go checks that they agree.
trust_domain        = "example.org"
# The SPIFFE CSI driver mounts the agent's socket directory here (agent.conf socket_path).
workload_api_socket = "unix:///spiffe-workload-api/spire-agent.sock"

# The broker's entry is an admin entry, so it may ask the server what it attested about callers
# (baseline-attested-only forbids everything else).
spire_server {
  address = "spire-server.spire.svc:8081"
}

log { format = "json" }
# On the pod's address, for the kubelet's probes and Prometheus; the NetworkPolicy limits who reaches it.
admin { listen = "0.0.0.0:8210" }

policy {
  # A ConfigMap volume keeps its files in a hidden, timestamped directory that ..data points to, and
  # links each file beside it: reading ..data sees each policy once, and each update whole.
  dir           = "/etc/svidbroker/policies/..data"
  mask_key_file = "/etc/svidbroker/keys/mask.key"
}

# No chain name: each broker's is its host name, the pod's name, so that replicas never share one.
audit {
  postgres {
    address  = "audit-db.svidbroker.svc:5432"
    database = "svidbroker_audit"
    user     = "svidbroker" # the first DNS name of the broker's SVID: PostgreSQL cert authentication
    ca_file  = "/etc/svidbroker/ca/audit-db.pem"
  }
  mac_key_file     = "/etc/svidbroker/keys/mac.key"
  signing_key_file = "/etc/svidbroker/keys/signing.key"
}

vault {
  address     = "https://vault.vault.svc:8200"
  ca_file     = "/etc/svidbroker/ca/vault.pem"
  cert_role   = "svidbroker" # the cert auth method, with the broker's X.509-SVID
  journal_dir = "/var/lib/svidbroker/leases"
}

catalog "shop" {
  kind        = "postgres"
  environment = "prod"
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

group "analysts" { selectors = ["agent:name:analyst"] }
group "support" { selectors = ["agent:name:support"] }
group "migrators" { selectors = ["agent:name:migrator"] }

target "shop" {
  protocol = "postgres"
  listen   = "0.0.0.0:15432"
  backend {
    address  = "shop-db.shop.svc:5432"
    database = "shop"
    auth     = "vault" # a dynamic credential per session, of the role Cedar picks
    ca_file  = "/etc/svidbroker/ca/shop-db.pem"
  }
}
