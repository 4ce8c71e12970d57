package forwarder

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// httpBroker is a real HTTPS server with mutual TLS (offering h2 and http/1.1) that answers each
// request with the caller's SPIFFE ID and the protocol it spoke; it counts TLS connections.
func httpBroker(t *testing.T, ca *testCA) (addr string, conns *atomic.Int32) {
	t.Helper()
	conns = &atomic.Int32{}
	tc := tlsconfig.MTLSServerConfig(ca.svid(t, brokerPath), ca.bundle(), tlsconfig.AuthorizeMemberOf(ca.td))
	tc.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := spiffetls.PeerIDFromConnectionState(*r.TLS)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%s %s %s", id, r.Proto, r.URL.Path)
		}),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, tc))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), conns
}

func startHTTP(t *testing.T, broker string, ca *testCA, brokerIDPath string) string {
	t.Helper()
	fwd, err := New(Config{Protocol: HTTP, Broker: broker, BrokerID: spiffeid.RequireFromPath(ca.td, brokerIDPath),
		SVID: ca.svid(t, forwarderPath), Bundles: ca.bundle(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fwd.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHTTPClientReachesBrokerAsTheForwardersIdentity(t *testing.T) {
	ca := newTestCA(t, "example.org")
	broker, conns := httpBroker(t, ca)
	addr := startHTTP(t, broker, ca, brokerPath)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	for _, path := range []string{"/v1/customers/1", "/v1/customers/2"} {
		code, body := get(t, c, "http://"+addr+path)
		// HTTP/1.1 although the broker offers h2: the forwarder relays HTTP/1.1 bytes, so it asks for that.
		if want := "spiffe://example.org" + forwarderPath + " HTTP/1.1 " + path; code != 200 || body != want {
			t.Fatalf("got %d %q, want 200 %q", code, body, want)
		}
	}
	// Two requests on one kept-alive client connection used one broker connection.
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d broker connections for one client connection, want 1", n)
	}
}

func TestHTTPClientToldWhenTheBrokerIsUnreachable(t *testing.T) {
	ca := newTestCA(t, "example.org")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	addr := startHTTP(t, closed, ca, brokerPath)
	code, body := get(t, &http.Client{Timeout: 30 * time.Second}, "http://"+addr+"/v1/customers/1")
	if code != http.StatusBadGateway || !strings.Contains(body, "svidbroker connect: cannot reach the broker at "+closed) {
		t.Fatalf("got %d %q, want 502 naming the broker", code, body)
	}
}

func TestHTTPWrongBrokerIDRefused(t *testing.T) {
	ca := newTestCA(t, "example.org")
	broker, _ := httpBroker(t, ca)
	addr := startHTTP(t, broker, ca, "/impostor-expected")
	code, body := get(t, &http.Client{Timeout: 30 * time.Second}, "http://"+addr+"/")
	if code != http.StatusBadGateway || !strings.Contains(body, `unexpected ID "spiffe://example.org/svidbroker"`) {
		t.Fatalf("got %d %q, want 502 refusing the broker's ID", code, body)
	}
}
