package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// TestVerifyOutput: `audit verify` says what it proves. Without a witness, it verifies through the
// last checkpoint and says so, never "intact"; with one, through the witness's latest checkpoint; a
// log cut together with its checkpoints passes alone and fails against the witness; a missing log
// fails; a torn last line is a failed write, not a problem.
func TestVerifyOutput(t *testing.T) {
	keys, witness := t.TempDir(), t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"audit", "keygen", "--dir", keys}, &out, &errOut); code != 0 {
		t.Fatalf("keygen: %d %s", code, errOut.String())
	}
	mac, err := audit.LoadMACKey(filepath.Join(keys, audit.MACKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadSigner(filepath.Join(keys, audit.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := audit.LoadVerifier(filepath.Join(keys, audit.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for run := range 2 { // records: start, 2, 2; checkpoints at 1, 3, 5
		l, err := audit.Open(audit.Config{Dir: dir, Chain: "c", MACKey: mac, Signer: signer, Verifier: verifier,
			Witness: &audit.FileWitness{Dir: witness}, CheckpointInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := l.Append(audit.Record{Kind: audit.KindStatement, Session: "s", Time: time.Now().UTC(),
				Statement: &audit.Statement{Protocol: "simple", Text: "SELECT " + string(rune('0'+run*2+i))}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(extra ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"audit", "verify", "--dir", dir, "--chain", "c", "--mac-key", filepath.Join(keys, audit.MACKeyFile)}, extra...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	expect := func(name string, code int, out string, wantCode int, has ...string) {
		t.Helper()
		if code != wantCode {
			t.Errorf("%s: exit %d, want %d:\n%s", name, code, wantCode, out)
		}
		for _, h := range has {
			if !strings.Contains(out, h) {
				t.Errorf("%s: output does not say %q:\n%s", name, h, out)
			}
		}
		if strings.Contains(out, "intact") {
			t.Errorf("%s: output says intact:\n%s", name, out)
		}
	}
	code, out1 := verify()
	expect("no witness", code, out1, 0, "verified through record 5 (the last signed checkpoint", "configure audit.witness")
	code, out1 = verify("--witness", witness)
	expect("with the witness", code, out1, 0, "verified against the witness through record 5")

	// Cut the last run's records and checkpoint together.
	cut := func(path string, keep int) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ls := bytes.SplitAfter(b, []byte("\n"))
		if err := os.WriteFile(path, bytes.Join(ls[:keep], nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cut(filepath.Join(dir, "c.jsonl"), 3)
	cut(filepath.Join(dir, "c.checkpoints"), 2)
	code, out1 = verify()
	expect("cut, no witness", code, out1, 0, "verified through record 3 (the last signed checkpoint")
	code, out1 = verify("--witness", witness)
	expect("cut, with the witness", code, out1, 1, "PROBLEM", "holds a checkpoint of record 5", "records 4 to 5 were removed")

	// A torn last line after the whole records is a failed write.
	f, err := os.OpenFile(filepath.Join(dir, "c.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"prev":"`)
	f.Close()
	code, out1 = verify()
	expect("torn tail", code, out1, 0, "FAILED WRITE  log line 4: a failed write left an incomplete final line (17 bytes", "not tampering")

	os.Remove(filepath.Join(dir, "c.jsonl"))
	code, out1 = verify()
	expect("missing log", code, out1, 1, "PROBLEM", "the log is missing or empty")

	code, out1 = verify("--witness", "http://w/")
	expect("plain http witness", code, out1, 2, "give a directory or an https URL")
	code, out1 = verify("--witness", witness, "--no-witness")
	expect("two witness flags", code, out1, 2, "at most one of")
}
