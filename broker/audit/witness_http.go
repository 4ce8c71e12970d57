package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// The HTTPS witness protocol. The broker only ever adds checkpoints; a witness keeps, per chain, the
// latest it accepted and never goes back.
//
//	POST <url>              body {"chain": "<chain>", "seq": <record>, "note": "<signed checkpoint>"}
//	                        (Content-Type application/json, at most 8 KiB)
//	  200, 201 or 204       stored (or this checkpoint was stored before)
//	  409                   the witness holds a later checkpoint of the chain: refused
//	  other                 not stored; the broker tries again
//	GET <url>?chain=<chain>
//	  200                   body: the latest checkpoint held, as POSTed
//	  404                   none held
//
// A witness should check each note's signature with the chain's verifier key, and that its chain and
// seq are the ones the body names (WitnessHandler does).

// HTTPWitness is a witness served over HTTPS.
type HTTPWitness struct {
	// URL is the witness's endpoint; https only.
	URL string
	// Client makes the requests; its transport verifies the witness's certificate (and may present
	// the broker's SVID). Its own timeout, if any, applies too.
	Client *http.Client
	// Attempts is how many times a call is tried within its context's deadline. Default 3.
	Attempts int
}

var _ Witness = (*HTTPWitness)(nil)

// maxWitnessBody bounds what is read from a witness and what a witness accepts.
const maxWitnessBody = 2 * MaxNoteBytes

// NewHTTPWitness checks the URL and returns a witness using client.
func NewHTTPWitness(rawURL string, client *http.Client) (*HTTPWitness, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("audit: witness url %q must be an https URL", rawURL)
	}
	return &HTTPWitness{URL: rawURL, Client: client}, nil
}

// Publish POSTs the checkpoint, retrying a failure other than a conflict.
func (w *HTTPWitness) Publish(ctx context.Context, chain string, seq uint64, signed []byte) error {
	body, _ := json.Marshal(witnessLine{Chain: chain, Seq: seq, Note: string(signed)})
	return w.try(ctx, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.Client.Do(req)
		if err != nil {
			return true, err
		}
		defer drain(resp)
		switch resp.StatusCode {
		case http.StatusOK, http.StatusCreated, http.StatusNoContent:
			return false, nil
		case http.StatusConflict:
			return false, fmt.Errorf("%w (record %d refused)", ErrWitnessConflict, seq)
		}
		return true, fmt.Errorf("witness answered %s", resp.Status)
	})
}

// Latest GETs the chain's latest checkpoint.
func (w *HTTPWitness) Latest(ctx context.Context, chain string) ([]byte, error) {
	var out []byte
	err := w.try(ctx, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL+"?chain="+url.QueryEscape(chain), nil)
		if err != nil {
			return false, err
		}
		resp, err := w.Client.Do(req)
		if err != nil {
			return true, err
		}
		defer drain(resp)
		switch resp.StatusCode {
		case http.StatusNotFound:
			out = nil
			return false, nil
		case http.StatusOK:
		default:
			return true, fmt.Errorf("witness answered %s", resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessBody+1))
		if err != nil {
			return true, err
		}
		wl, err := decodeWitnessLine(b)
		if err != nil {
			return false, fmt.Errorf("witness answered: %w", err)
		}
		if wl.Chain != chain {
			return false, fmt.Errorf("witness answered with a checkpoint of chain %q", Escape(wl.Chain))
		}
		out = []byte(wl.Note)
		return false, nil
	})
	return out, err
}

// try runs call up to Attempts times while it says to retry, backing off, within ctx.
func (w *HTTPWitness) try(ctx context.Context, call func() (retry bool, err error)) error {
	attempts := w.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	backoff := 100 * time.Millisecond
	var err error
	for i := range attempts {
		var again bool
		if again, err = call(); err == nil || !again || i == attempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(backoff):
			backoff *= 2
		}
	}
	return err
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWitnessBody))
	resp.Body.Close()
}

// WitnessHandler serves the HTTPS witness protocol over a FileWitness: it accepts a checkpoint only
// if its signature verifies under one of verifiers and it is the checkpoint the body names, and
// never one older than it holds. Serve it over TLS, on another host than the broker.
func WitnessHandler(store *FileWitness, verifiers note.Verifiers) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			chain := r.URL.Query().Get("chain")
			if !validChainName(chain) {
				http.Error(w, "give ?chain=NAME", http.StatusBadRequest)
				return
			}
			latest, err := store.Latest(r.Context(), chain)
			if err != nil {
				http.Error(w, "the witness cannot read its store", http.StatusInternalServerError)
				return
			}
			if latest == nil {
				http.Error(w, "no checkpoint of this chain", http.StatusNotFound)
				return
			}
			nt, _ := note.Open(latest, verifiers)
			seq := uint64(0)
			if nt != nil {
				if cp, err := parseCheckpoint(nt.Text); err == nil {
					seq = cp.seq
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(witnessLine{Chain: chain, Seq: seq, Note: string(latest)})
		case http.MethodPost:
			b, err := io.ReadAll(io.LimitReader(r.Body, maxWitnessBody+1))
			if err != nil {
				http.Error(w, "cannot read the body", http.StatusBadRequest)
				return
			}
			wl, err := decodeWitnessLine(b)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			nt, err := note.Open([]byte(wl.Note), verifiers)
			if err != nil {
				http.Error(w, "the checkpoint's signature does not verify under a key this witness knows", http.StatusForbidden)
				return
			}
			cp, err := parseCheckpoint(nt.Text)
			if err != nil || cp.chain != wl.Chain || cp.seq != wl.Seq || !validChainName(wl.Chain) {
				http.Error(w, "the signed checkpoint is not the one the body names", http.StatusBadRequest)
				return
			}
			switch err := store.Publish(r.Context(), wl.Chain, wl.Seq, []byte(wl.Note)); {
			case errors.Is(err, ErrWitnessConflict):
				http.Error(w, err.Error(), http.StatusConflict)
			case err != nil:
				http.Error(w, "the witness cannot store it", http.StatusInternalServerError)
			default:
				w.WriteHeader(http.StatusCreated)
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		}
	})
}

// validChainName reports whether a chain name is safe as a file name.
func validChainName(s string) bool {
	if s == "" || len(s) > 256 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
