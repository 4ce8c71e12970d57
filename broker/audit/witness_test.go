package audit

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// witnesses are the kinds of witness the tests run against: files on another directory, and the
// HTTPS protocol served by WitnessHandler over TLS.
func witnesses(t *testing.T, k keys) map[string]func() Witness {
	return map[string]func() Witness{
		"file": func() Witness { return &FileWitness{Dir: t.TempDir()} },
		"https": func() Witness {
			srv := httptest.NewTLSServer(WitnessHandler(&FileWitness{Dir: t.TempDir()}, note.VerifierList(k.verif)))
			t.Cleanup(srv.Close)
			w, err := NewHTTPWitness(srv.URL+"/v1/checkpoints", srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			return w
		},
	}
}

func witnessedConfig(k keys, dir string, w Witness) Config {
	return Config{Dir: dir, Chain: "b1", MACKey: k.mac, Signer: k.signer, Verifier: k.verif, Witness: w, CheckpointInterval: time.Hour}
}

// writeRuns writes runs of n records, closing the log after each (a checkpoint each time).
func writeRuns(t *testing.T, cfg Config, runs, n int) {
	t.Helper()
	for r := range runs {
		l, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := l.Append(stmt(r*100 + i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// cutBoth cuts the log to its first records and the checkpoints file to its first lines, as someone
// who removes the last records and their checkpoints together would.
func cutBoth(t *testing.T, dir string, records, checkpoints int) {
	t.Helper()
	for _, c := range []struct {
		path string
		keep int
	}{{chainPath(dir, "b1"), records}, {checkpointPath(dir, "b1"), checkpoints}} {
		b, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		ls := bytes.SplitAfter(b, []byte("\n"))
		if err := os.WriteFile(c.path, bytes.Join(ls[:c.keep], nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWitnessDetectsTruncationOfBothFiles: records and their checkpoints cut together verify on
// their own, back to the last checkpoint left, which is all that is proven; against the witness the
// cut shows, and the broker refuses to append to the cut chain. The uncut chain is the control.
func TestWitnessDetectsTruncationOfBothFiles(t *testing.T) {
	k := newKeys(t)
	for name, newWitness := range witnesses(t, k) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			w := newWitness()
			dir := t.TempDir()
			cfg := witnessedConfig(k, dir, w)
			writeRuns(t, cfg, 2, 3) // records: start, 3, 3; checkpoints at 1, 4, 7

			rep, err := VerifyWitnessed(ctx, dir, "b1", k.mac, k.verif, w)
			if err != nil || !rep.OK() || rep.Witnessed == nil || rep.Witnessed.Seq != 7 {
				t.Fatalf("the uncut chain against the witness: %+v %v", rep, err)
			}
			if seq, _ := rep.Proven(); seq != 7 {
				t.Fatalf("proven through %d; want 7", seq)
			}

			cutBoth(t, dir, 4, 2)
			rep, err = Verify(dir, "b1", k.mac, k.verif)
			if err != nil || !rep.OK() {
				t.Fatalf("the cut chain on its own: %+v %v", rep, err)
			}
			if seq, _ := rep.Proven(); seq != 4 {
				t.Fatalf("the cut chain on its own proves record %d; want 4", seq)
			}
			rep, err = VerifyWitnessed(ctx, dir, "b1", k.mac, k.verif, w)
			if err != nil || rep.OK() {
				t.Fatalf("the cut chain against the witness: %+v %v", rep, err)
			}
			if got := strings.Join(rep.Problems, "\n"); !strings.Contains(got, "holds a checkpoint of record 7") || !strings.Contains(got, "records 5 to 7 were removed") {
				t.Fatalf("problems: %s", got)
			}
			if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "records 5 to 7 were removed") {
				t.Fatalf("opened a chain the witness shows cut: %v", err)
			}
			// Both files removed: the witness still knows the chain.
			os.Remove(chainPath(dir, "b1"))
			os.Remove(checkpointPath(dir, "b1"))
			if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "the witness holds a checkpoint of it") {
				t.Fatalf("started a new chain over a removed one: %v", err)
			}
		})
	}
}

// TestWitnessRefusesToGoBack: a witness takes checkpoints of a chain only forward; the same one again
// is no error.
func TestWitnessRefusesToGoBack(t *testing.T) {
	k := newKeys(t)
	sign := func(seq uint64) []byte {
		b, err := note.Sign(&note.Note{Text: checkpointText("b1", seq, strings.Repeat("ab", 32), time.Now())}, k.signer)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, newWitness := range witnesses(t, k) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			w := newWitness()
			if latest, err := w.Latest(ctx, "b1"); err != nil || latest != nil {
				t.Fatalf("an empty witness: %q %v", latest, err)
			}
			for _, seq := range []uint64{1, 5, 5} {
				if err := w.Publish(ctx, "b1", seq, sign(seq)); err != nil {
					t.Fatalf("publish %d: %v", seq, err)
				}
			}
			if err := w.Publish(ctx, "b1", 4, sign(4)); !errors.Is(err, ErrWitnessConflict) {
				t.Fatalf("publish of an older checkpoint: %v", err)
			}
			latest, err := w.Latest(ctx, "b1")
			if err != nil || !bytes.Contains(latest, []byte("seq 5\n")) {
				t.Fatalf("latest %q %v", latest, err)
			}
		})
	}
}

// TestWitnessHandlerChecksWhatItIsSent: the HTTPS witness takes only checkpoints signed by a key it
// knows, that are the checkpoint the body names.
func TestWitnessHandlerChecksWhatItIsSent(t *testing.T) {
	k, other := newKeys(t), newKeys(t)
	srv := httptest.NewTLSServer(WitnessHandler(&FileWitness{Dir: t.TempDir()}, note.VerifierList(k.verif)))
	defer srv.Close()
	post := func(body string) int {
		resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	signed := func(s note.Signer, chain string, seq uint64) string {
		b, err := note.Sign(&note.Note{Text: checkpointText(chain, seq, strings.Repeat("cd", 32), time.Now())}, s)
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(strings.ReplaceAll(string(b), `"`, `\"`), "\n", `\n`)
	}
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"signed by another key", `{"chain":"b1","seq":3,"note":"` + signed(other.signer, "b1", 3) + `"}`, http.StatusForbidden},
		{"seq not the signed one", `{"chain":"b1","seq":9,"note":"` + signed(k.signer, "b1", 3) + `"}`, http.StatusBadRequest},
		{"chain not the signed one", `{"chain":"b2","seq":3,"note":"` + signed(k.signer, "b1", 3) + `"}`, http.StatusBadRequest},
		{"a path as the chain", `{"chain":"../x","seq":3,"note":"` + signed(k.signer, "../x", 3) + `"}`, http.StatusBadRequest},
		{"not JSON", `seq 3`, http.StatusBadRequest},
		{"control: the checkpoint it names", `{"chain":"b1","seq":3,"note":"` + signed(k.signer, "b1", 3) + `"}`, http.StatusCreated},
		{"older than one held", `{"chain":"b1","seq":2,"note":"` + signed(k.signer, "b1", 2) + `"}`, http.StatusConflict},
	} {
		if got := post(c.body); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// flakyWitness is the HTTPS witness, which answers 503 while down.
func flakyWitness(t *testing.T, k keys) (Witness, *atomic.Bool) {
	var down atomic.Bool
	h := WitnessHandler(&FileWitness{Dir: t.TempDir()}, note.VerifierList(k.verif))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	w, err := NewHTTPWitness(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	w.Attempts = 1
	return w, &down
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestUnreachableWitnessStopsNewAccessAfterItsBound: checkpoints the witness does not take wait;
// within max_lag statements go on, and the witness's state is reported; beyond it, Err reports the
// log unavailable and statements' records are refused, while records nobody waits for are still
// kept. Once the witness takes the checkpoint, access resumes.
func TestUnreachableWitnessStopsNewAccessAfterItsBound(t *testing.T) {
	k := newKeys(t)
	w, down := flakyWitness(t, k)
	clk := &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	cfg := witnessedConfig(k, t.TempDir(), w)
	cfg.Now, cfg.WitnessMaxLag, cfg.RetryInterval, cfg.FlushInterval = clk.now, time.Minute, 20*time.Millisecond, time.Millisecond
	cfg.CheckpointInterval = 5 * time.Millisecond
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	eventually(t, "the start checkpoint reaching the witness", func() bool {
		latest, _ := w.Latest(context.Background(), "b1")
		return latest != nil
	})
	down.Store(true)
	if err := l.Append(stmt(1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed attempt to send the next checkpoint", func() bool { return l.WitnessErr() != nil })
	if err := l.Err(); err != nil {
		t.Fatalf("Err within max_lag: %v", err)
	}
	if err := l.Write(stmt(2), false); err != nil {
		t.Fatalf("a statement within max_lag: %v", err)
	}
	clk.add(2 * time.Minute)
	if err := l.Err(); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "the witness has not taken the checkpoint") {
		t.Fatalf("Err beyond max_lag: %v", err)
	}
	if err := l.Write(stmt(3), false); !errors.Is(err, ErrFailed) {
		t.Fatalf("a statement beyond max_lag: %v", err)
	}
	l.AppendAsync(Record{Kind: KindSessionEnd, Session: "s1"})
	down.Store(false)
	eventually(t, "the witness taking the latest checkpoint", func() bool { return l.Err() == nil })
	if err := l.Write(stmt(4), false); err != nil {
		t.Fatalf("a statement once the witness took the checkpoint: %v", err)
	}
	l.Close()
	rep, err := VerifyWitnessed(context.Background(), cfg.Dir, "b1", k.mac, k.verif, w)
	if err != nil || !rep.OK() || rep.Witnessed.Seq != rep.Records {
		t.Fatalf("after close: %+v %v", rep, err)
	}
	var ends int
	_ = Read(cfg.Dir, "b1", func(e Entry) error {
		if e.Record.Kind == KindSessionEnd {
			ends++
		}
		return nil
	})
	if ends != 1 {
		t.Fatalf("%d session ends kept while the witness was overdue; want 1", ends)
	}
}

// TestVerifyWithoutWitnessProvesOnlyTheLastCheckpoint: records after the last checkpoint verify, but
// the report proves only up to the checkpoint, with its time.
func TestVerifyWithoutWitnessProvesOnlyTheLastCheckpoint(t *testing.T) {
	k := newKeys(t)
	dir := writeChain(t, k, 3)
	l := openLog(t, k, dir)
	defer l.Close()
	if err := l.Write(stmt(7), false); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, "b1", k.mac, k.verif)
	if err != nil || !rep.OK() {
		t.Fatalf("%+v %v", rep, err)
	}
	seq, at := rep.Proven()
	if seq != 4 || at.IsZero() || rep.Records != 5 {
		t.Fatalf("proven through %d at %v, of %d records; want 4 of 5, with a time", seq, at, rep.Records)
	}
}

// TestCutChainShowsOnceTheWitnessAnswers: a broker started while the witness is down cannot check the
// chain against it then; it does so once the witness answers, and a chain that was cut then refuses
// statements at once. The uncut chain, started the same way, goes on.
func TestCutChainShowsOnceTheWitnessAnswers(t *testing.T) {
	k := newKeys(t)
	for _, cut := range []bool{false, true} {
		t.Run(map[bool]string{false: "control: uncut", true: "cut"}[cut], func(t *testing.T) {
			w, down := flakyWitness(t, k)
			dir := t.TempDir()
			cfg := witnessedConfig(k, dir, w)
			cfg.RetryInterval, cfg.FlushInterval = 20*time.Millisecond, time.Millisecond
			writeRuns(t, cfg, 2, 3) // checkpoints at 1, 4, 7 in the witness
			if cut {
				cutBoth(t, dir, 4, 2)
			}
			down.Store(true)
			l, err := Open(cfg)
			if err != nil {
				t.Fatalf("open while the witness is down: %v", err)
			}
			defer l.Close()
			// Past record 7, which the witness holds, even on the cut chain: a witness that checks
			// sequence numbers alone would take its checkpoint.
			for i := range 5 {
				if err := l.Append(stmt(50 + i)); err != nil {
					t.Fatal(err)
				}
			}
			l.checkpoint()
			down.Store(false)
			if !cut {
				eventually(t, "the witness taking the checkpoint", func() bool {
					latest, _ := w.Latest(context.Background(), "b1")
					return bytes.Contains(latest, []byte("seq 12\n"))
				})
				if err := l.Err(); err != nil {
					t.Fatalf("the uncut chain: %v", err)
				}
				return
			}
			eventually(t, "the cut showing", func() bool { return l.Err() != nil })
			if err := l.Write(stmt(51), false); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "does not cover the witness's latest checkpoint") {
				t.Fatalf("a statement on a chain the witness shows cut: %v", err)
			}
			if latest, _ := w.Latest(context.Background(), "b1"); !bytes.Contains(latest, []byte("seq 7\n")) {
				t.Fatalf("the witness took a checkpoint of the cut chain: %s", latest)
			}
		})
	}
}

// TestHTTPWitnessVerifiesAndBoundsItsCalls: a witness whose certificate the client does not trust is
// not used, and a witness that does not answer is given up on at the call's deadline.
func TestHTTPWitnessVerifiesAndBoundsItsCalls(t *testing.T) {
	k := newKeys(t)
	srv := httptest.NewTLSServer(WitnessHandler(&FileWitness{Dir: t.TempDir()}, note.VerifierList(k.verif)))
	defer srv.Close()
	untrusting, err := NewHTTPWitness(srv.URL, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.Latest(context.Background(), "b1"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a witness with an untrusted certificate: %v", err)
	}
	if _, err := NewHTTPWitness("http://witness/", http.DefaultClient); err == nil {
		t.Fatal("accepted a plain http witness")
	}
	stuck := make(chan struct{})
	hung := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stuck }))
	defer func() { close(stuck); hung.Close() }()
	w, err := NewHTTPWitness(hung.URL, hung.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Publish(ctx, "b1", 1, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a witness that does not answer: %v", err)
	}
}
