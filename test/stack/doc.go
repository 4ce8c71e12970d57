// Package stack starts the real components svidbroker runs against, as local processes on loopback, for
// the end-to-end tests and for `make demo`:
//
//   - a SPIRE server and agent (v1.13.3, built by `make tools`), configured from spire-conf/dev, with the
//     agent attested by a join token created through the server's API;
//   - registration entries created through the server's Entry API, one per persona, each selecting a
//     distinct unix uid so that the unix workload attestor gives every persona its own SPIFFE ID;
//   - a throwaway PostgreSQL 15 cluster (Debian's initdb) with scram-sha-256, TLS with a certificate
//     generated for the run, and the seeded demo database "shop";
//   - on request, the shop API (StartShopAPI), the demo MCP server (StartMCPShop, with
//     (*MCPShop).TargetHCL for the packs' mcp target "tools" and ConfigureToolsVault for its token
//     roles) and the test OpenID provider for approvers (StartOIDC).
//
// Everything lives in one temporary directory. Close stops exactly the processes the stack started, by
// PID, and waits for them and their children to exit.
//
// Personas run as distinct uids, so the stack must run as root; that is how CI and the demo run.
package stack
