package main

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
)

// TestReadinessListsEachDependency: the broker's checks are its SVID, its audit log, its policy set,
// the SPIRE server when enrichment is configured, each target's backend, and Vault for each target
// whose credential comes from it.
func TestReadinessListsEachDependency(t *testing.T) {
	cfg := &config.Config{Vault: &config.Vault{Mount: "database"}, Targets: []config.Target{
		{Name: "shop", Backend: config.Backend{Address: "127.0.0.1:1", Auth: "vault", VaultRole: "shop-read"}},
		{Name: "crm", Backend: config.Backend{Address: "127.0.0.1:2"}},
	}}
	ok := func(context.Context) error { return nil }
	for _, c := range []struct {
		name string
		deps dependencies
		want []string
	}{
		{"everything", dependencies{audit: func() error { return nil }, spire: ok, vault: ok},
			[]string{"svid", "audit", "spire-server", "target/shop/backend", "target/shop/vault", "target/crm/backend"}},
		{"no audit, SPIRE or Vault", dependencies{},
			[]string{"svid", "target/shop/backend", "target/crm/backend"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, ch := range readinessChecks(cfg, c.deps) {
				got = append(got, ch.Name)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("checks %v, want %v", got, c.want)
			}
		})
	}
}

// TestDialCheck: a backend that accepts connections passes; one that refuses, or does not answer by
// the deadline, fails with a reason that names no address.
func TestDialCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := ln.Addr().String()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := closed.Addr().String()
	closed.Close()
	defer ln.Close()
	for _, c := range []struct {
		name    string
		addr    string
		timeout time.Duration
		want    string // "" for ok
	}{
		{"listening", up, time.Second, ""},
		{"refused", down, time.Second, "cannot connect: connection refused"},
		{"past the deadline", up, -time.Second, "no connection within the deadline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), c.timeout)
			defer cancel()
			err := dialCheck(ctx, c.addr)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("dialCheck = %v", err)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Fatalf("dialCheck = %v; want %q", err, c.want)
			case err != nil && strings.Contains(err.Error(), "127.0.0.1"):
				t.Fatalf("the reason names the address: %v", err)
			}
		})
	}
}
