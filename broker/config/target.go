package config

import (
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// targets checks the target blocks, each with its protocol's validator, then that every catalog
// names one of them.
func (v *validator) targets(protocols map[string]Protocol) {
	c := v.c
	if len(c.Targets) == 0 {
		v.fail("No targets", "Add at least one target block; without one the broker has nothing to serve.", "target")
	}
	names := map[string]bool{}
	listens := map[string]*Target{}
	for i := range c.Targets {
		t := &c.Targets[i]
		at := "target:" + t.Name
		if names[t.Name] {
			v.fail("Duplicate target", fmt.Sprintf("target %q is defined twice.", t.Name), at)
		}
		names[t.Name] = true
		v.oneOf(t.Protocol, protocolNames(protocols), at, "protocol")
		v.hostPort(t.Listen, at, "listen")
		// PostgreSQL targets may share a listener: the client's database names the target.
		if other, ok := listens[t.Listen]; ok && (other.Protocol != "postgres" || t.Protocol != "postgres") {
			v.fail("Duplicate listener", fmt.Sprintf("targets %q and %q both listen on %s; only postgres targets can share a listener.", other.Name, t.Name, t.Listen), at, "listen")
		}
		listens[t.Listen] = t
		v.allowSPIFFEIDs(t, at)
		// A protocol no plugin serves has already been reported; nothing knows its blocks' meaning.
		p := protocols[t.Protocol]
		check := &Check{v: v, block: []string{at}}
		if p != nil {
			p.ValidateBackend(t, check)
		}
		v.credentialRoles(t, at)
		if p != nil {
			p.ValidateTimeouts(t, check)
		}
	}
	for _, cb := range c.Catalogs {
		if !names[cb.Target] {
			v.fail("Catalog for no target", fmt.Sprintf("catalog %q names no target block.", cb.Target), "catalog:"+cb.Target)
		}
	}
}

// allowSPIFFEIDs parses a target's allow_spiffe_ids into Allowed.
func (v *validator) allowSPIFFEIDs(t *Target, at string) {
	c := v.c
	t.Allowed = nil
	for _, s := range t.AllowSPIFFEIDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			v.fail("Invalid SPIFFE ID", fmt.Sprintf("allow_spiffe_ids entry %q: %v.", s, err), at, "allow_spiffe_ids")
			continue
		}
		if !slices.Contains(c.Trusted, id.TrustDomain()) {
			v.fail("Foreign SPIFFE ID", fmt.Sprintf("allow_spiffe_ids entry %q is not in trust domain %q or a federated one; add its trust domain to federated_trust_domains.", s, c.TrustDomain), at, "allow_spiffe_ids")
			continue
		}
		t.Allowed = append(t.Allowed, id)
	}
	if c.Policy != nil && len(t.AllowSPIFFEIDs) > 0 {
		v.fail("Two authorizations", "with a policy block, Cedar decides connections: move allow_spiffe_ids into a policy.", at, "allow_spiffe_ids")
	}
}
