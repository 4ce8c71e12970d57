package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/config"
)

// TestReadinessListsTheAuditWitness: with a witness, readiness lists its backlog as an optional
// check beside the audit log's; a witness that cannot take checkpoints fails that check, while the
// audit check passes within max_lag.
func TestReadinessListsTheAuditWitness(t *testing.T) {
	keys := t.TempDir()
	if err := audit.GenerateKeys(keys, "t"); err != nil {
		t.Fatal(err)
	}
	mac, _ := audit.LoadMACKey(filepath.Join(keys, audit.MACKeyFile))
	signer, _ := audit.LoadSigner(filepath.Join(keys, audit.SigningKeyFile))
	verifier, _ := audit.LoadVerifier(filepath.Join(keys, audit.VerifierKeyFile))
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: t.TempDir(), Chain: "c", MACKey: mac, Signer: signer, Verifier: verifier,
		Witness: &audit.FileWitness{Dir: notADir}, WitnessMaxLag: time.Hour, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	checks := readinessChecks(&config.Config{}, dependencies{audit: l.Err, auditWitness: l.WitnessErr})
	var names []string
	for _, c := range checks {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "svid,audit,audit-witness" || !checks[2].Optional {
		t.Fatalf("checks %v", names)
	}
	if err := checks[1].Check(context.Background()); err != nil {
		t.Fatalf("audit within max_lag: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for checks[2].Check(context.Background()) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the witness check passes while the witness cannot take a checkpoint")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
