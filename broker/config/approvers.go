package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Approvers configures how people approve held operations with `policy.approver = "oidc"`: the
// OpenID provider that authenticates them, and where pending requests and granted approvals are kept.
type Approvers struct {
	// OIDC is the provider approvers log in at (the console's code flow, `svidbroker approvals`'s
	// device flow). Required with approver = "oidc".
	OIDC *ApproversOIDC `hcl:"oidc,block"`
	// StateDir holds the approvals journal (approvals.journal), fsynced at every change: pending
	// requests and grants survive a restart. Required unless Store is "postgres".
	StateDir string `hcl:"state_dir,optional"`
	// Store is where requests are kept: "journal" (the default: StateDir, this broker alone) or
	// "postgres" (the audit block's PostgreSQL database, shared by a fleet of brokers: a request
	// raised on one is approved through another).
	Store string `hcl:"store,optional"`
}

// ApproversOIDC names the provider and the broker's registration there.
type ApproversOIDC struct {
	// Issuer is the provider's https issuer URL, exactly as its discovery document states it.
	Issuer string `hcl:"issuer"`
	// ClientID is the broker's client ID: ID tokens must name it as their audience.
	ClientID string `hcl:"client_id"`
	// ClientSecretFile holds the client secret (the console's code flow); the CLI's device flow is a
	// public client and needs none.
	ClientSecretFile string `hcl:"client_secret_file,optional"`
	// CAFile verifies the provider's TLS certificate. Default: the system's roots.
	CAFile string `hcl:"ca_file,optional"`
	// CLIClientID is the client ID of `svidbroker approvals` (a public client, device flow): the
	// approvals API on the admin listener accepts ID tokens issued to it. Default ClientID.
	CLIClientID string `hcl:"cli_client_id,optional"`
	// EmailClaim and GroupsClaim name the claims read into a Person's email and groups. Defaults
	// "email" and "groups".
	EmailClaim  string `hcl:"email_claim,optional"`
	GroupsClaim string `hcl:"groups_claim,optional"`
}

// Approver values of policy.approver.
const (
	ApproverNone = ""
	// ApproverDev resolves held operations through the admin listener's unauthenticated endpoints;
	// "admin-api" is its former name.
	ApproverDev      = "dev"
	ApproverAdminAPI = "admin-api"
	// ApproverOIDC lets OIDC-authenticated people decide, as Cedar's approve action permits.
	ApproverOIDC = "oidc"
)

// DevApprover says whether the policy block asks for the unauthenticated development approver.
func (p *Policy) DevApprover() bool {
	return p != nil && (p.Approver == ApproverDev || p.Approver == ApproverAdminAPI)
}

// approvers checks policy.approver against the approvers block and the admin listener. It runs after
// admin().
func (v *validator) approvers() {
	p, a := v.c.Policy, v.c.Approvers
	approver := ""
	if p != nil {
		approver = p.Approver
	}
	switch approver {
	case ApproverNone:
	case ApproverDev, ApproverAdminAPI:
		listen := *v.c.Admin.Listen
		if listen == "" {
			v.fail("Approver without a listener", `policy.approver = "dev" resolves held operations on the admin listener, which is disabled (admin.listen = "").`, "policy", "approver")
		} else if !Loopback(listen) {
			v.fail("Unauthenticated approver on the network", fmt.Sprintf(`policy.approver = %q authenticates no one, and admin.listen %q is not a loopback address: listen on 127.0.0.1 or [::1], or use approver = "oidc".`, approver, listen), "policy", "approver")
		}
	case ApproverOIDC:
		if a == nil || a.OIDC == nil {
			v.fail("Missing approvers block", `policy.approver = "oidc" needs an approvers block with an oidc block (issuer, client_id) and state_dir.`, "approvers")
			return
		}
		o := a.OIDC
		if !strings.HasPrefix(o.Issuer, "https://") {
			v.fail("Invalid issuer", fmt.Sprintf("approvers.oidc.issuer %q must be the provider's https issuer URL.", o.Issuer), "approvers", "oidc", "issuer")
		}
		if o.ClientID == "" {
			v.fail("Missing client ID", "approvers.oidc.client_id is required: the broker's client ID at the provider.", "approvers", "oidc", "client_id")
		}
		for _, f := range []struct{ path, name string }{{o.ClientSecretFile, "client_secret_file"}, {o.CAFile, "ca_file"}} {
			if f.path == "" {
				continue
			}
			if st, err := os.Stat(f.path); err != nil || st.IsDir() {
				v.fail("Missing file", fmt.Sprintf("approvers.oidc.%s %q is not a readable file.", f.name, f.path), "approvers", "oidc", f.name)
			}
		}
		switch a.Store {
		case "", "journal":
			a.Store = "journal"
			if st, err := os.Stat(a.StateDir); err != nil || !st.IsDir() {
				v.fail("Missing state directory", fmt.Sprintf("approvers.state_dir %q is not a directory; create it (mode 0700), owned by the broker's user.", a.StateDir), "approvers", "state_dir")
			}
		case "postgres":
			if v.c.Audit == nil || v.c.Audit.Postgres == nil {
				v.fail("No shared database", `approvers.store = "postgres" keeps requests in the audit block's postgres database: add audit { postgres { ... } }, or use store = "journal".`, "approvers", "store")
			}
		default:
			v.fail("Unknown approvals store", fmt.Sprintf(`approvers.store is %q; use "journal" or "postgres".`, a.Store), "approvers", "store")
		}
		if o.CLIClientID == "" {
			o.CLIClientID = o.ClientID
		}
	default:
		v.fail("Unknown approver", fmt.Sprintf(`policy.approver is %q; use "oidc", "dev" (development only) or leave it out.`, approver), "policy", "approver")
	}
	if a != nil && approver != ApproverOIDC {
		v.fail("Unused approvers block", `the approvers block is read only with policy.approver = "oidc".`, "approvers")
	}
}

// Loopback says whether the host of addr (host:port) is a loopback address or "localhost".
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
