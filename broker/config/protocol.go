package config

import (
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Plugins validate the blocks whose meaning belongs to a plugin rather than to the broker's core.
// config imports no plugin: cmd fills Plugins in from the plugins it wires, and passes it to Load.
type Plugins struct {
	// Protocols are the protocols the broker serves, by the name a target gives in
	// `protocol = "..."`. A target naming any other protocol is refused.
	Protocols map[string]Protocol
	// Vault validates the vault block, which configures the Vault credential plugin. Without it,
	// a vault block is refused.
	Vault VaultValidator
}

// Protocol validates the blocks of a target whose meaning belongs to the engine that serves the
// target's protocol: what its backend block must hold, and which timeouts it takes. A new protocol
// (an HTTP or MCP target) brings its own, in its plugin.
type Protocol interface {
	// ValidateBackend checks t.Backend, filling in its defaults.
	ValidateBackend(t *Target, c *Check)
	// ValidateTimeouts checks t.Timeouts, filling in the block and its defaults when it is absent.
	ValidateTimeouts(t *Target, c *Check)
}

// VaultValidator validates the vault block, filling in its defaults and the login Method.
type VaultValidator interface {
	ValidateVault(vb *Vault, c *Check)
}

// protocolNames are the names of the protocols served, in the order users see them in errors.
func protocolNames(protocols map[string]Protocol) []string {
	return slices.Sorted(maps.Keys(protocols))
}

// Check is how a plugin reports the problems of the block it validates, so that every problem of the
// file is listed at once and each names file:line. A path is relative to that block (for a
// Protocol, the target block), such as ("backend", "database"); its last element names the
// attribute.
type Check struct {
	v     *validator
	block []string // the steps to the block, as locate takes them: "target:NAME", or "vault"
}

func (c *Check) at(path []string) []string {
	return append(slices.Clip(c.block), path...)
}

// Fail reports a problem with the attribute at path.
func (c *Check) Fail(summary, detail string, path ...string) {
	c.v.fail(summary, detail, c.at(path)...)
}

// Duration parses raw, a positive duration, or returns def if raw is empty or invalid (reporting it).
func (c *Check) Duration(raw string, def time.Duration, path ...string) time.Duration {
	return c.v.duration(raw, def, c.at(path)...)
}

// HostPort reports addr unless it is host:port.
func (c *Check) HostPort(addr string, path ...string) {
	c.v.hostPort(addr, c.at(path)...)
}

// authMethods are how the broker may authenticate to a backend, in the order users see them in errors.
var authMethods = []string{"svid", "vault", "vault-kv"}

// BackendAuth checks where the broker's credential for the backend comes from, the part of a backend
// block that every protocol shares: auth (default "svid") and, for the Vault methods, the fields
// that belong to each and the top-level vault block they need. What "svid" needs beyond that is the
// protocol's to check. Which Vault role a session leases from is checked with the catalog.
func (c *Check) BackendAuth(b *Backend) {
	if b.Auth == "" {
		b.Auth = "svid"
	}
	c.v.oneOf(b.Auth, authMethods, c.at([]string{"backend", "auth"})...)
	switch b.Auth {
	case "vault":
		if b.VaultKVPath != "" || b.VaultKVMount != "" {
			c.Fail("kv-v2 with a dynamic source", "vault_kv_mount and vault_kv_path belong to auth = \"vault-kv\".", "backend", "vault_kv_path")
		}
		if b.VaultMount != "" && b.VaultPath != "" {
			c.Fail("Mount with a path", "backend.vault_path names the whole Vault path; vault_mount applies to vault_role and the catalog's credential roles only.", "backend", "vault_mount")
		}
		if b.VaultMount == "" && c.v.c.Vault != nil {
			b.VaultMount = c.v.c.Vault.Mount
		}
	case "vault-kv":
		if b.VaultKVPath == "" {
			c.Fail("Missing vault_kv_path", "with auth = \"vault-kv\", backend.vault_kv_path names the kv-v2 secret holding the credential.", "backend", "vault_kv_path")
		}
		if b.VaultRole != "" || b.VaultPath != "" {
			c.Fail("Dynamic source with kv-v2", "vault_role and vault_path belong to auth = \"vault\".", "backend", "vault_role")
		}
		if b.VaultKVMount == "" {
			b.VaultKVMount = "secret"
		}
	}
	if strings.HasPrefix(b.Auth, "vault") && c.v.c.Vault == nil {
		c.Fail("Missing vault block", fmt.Sprintf("auth = %q needs a top-level vault block (address, ca_file, a login, journal_dir).", b.Auth), "backend", "auth")
	}
}

// BackendCAFile checks that backend.ca_file holds a PEM certificate: TLS to every backend is verified.
func (c *Check) BackendCAFile(b *Backend) {
	pemBytes, err := os.ReadFile(b.CAFile)
	if err != nil {
		c.Fail("Unreadable CA file", fmt.Sprintf("backend.ca_file: %v.", err), "backend", "ca_file")
	} else if !x509.NewCertPool().AppendCertsFromPEM(pemBytes) {
		c.Fail("Invalid CA file", fmt.Sprintf("backend.ca_file %s holds no PEM certificate.", b.CAFile), "backend", "ca_file")
	}
}
