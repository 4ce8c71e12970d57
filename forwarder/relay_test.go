package forwarder

import (
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		got <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestRelayPassesHalfClose: a client that finishes sending (FIN) still reads the whole answer, and the
// far side sees the end of the request as EOF.
func TestRelayPassesHalfClose(t *testing.T) {
	client, clientSide := tcpPair(t)
	brokerSide, server := tcpPair(t)
	done := make(chan relayStats, 1)
	go func() { done <- relay(context.Background(), clientSide, brokerSide, time.Minute) }()

	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = server.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := io.ReadAll(server) // ends only at the relayed FIN
	if err != nil || string(req) != "ping" {
		t.Fatalf("server read %q, %v; want ping then EOF", req, err)
	}
	if _, err := server.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	_ = client.SetDeadline(time.Now().Add(30 * time.Second))
	resp, err := io.ReadAll(client)
	if err != nil || string(resp) != "pong" {
		t.Fatalf("client read %q, %v; want pong then EOF", resp, err)
	}
	st := <-done
	if st.up != 4 || st.down != 4 {
		t.Fatalf("relayed %d up, %d down; want 4 and 4", st.up, st.down)
	}
}

// The idle tests run in a synctest bubble on net.Pipe: time is the bubble's, so "nothing moved for
// the idle period" does not depend on how fast this machine is.

func TestRelayEndsIdleConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, clientSide := net.Pipe()
		brokerSide, server := net.Pipe()
		done := make(chan relayStats, 1)
		go func() { done <- relay(context.Background(), clientSide, brokerSide, time.Minute) }()
		st := <-done
		if st.reason != "idle" {
			t.Fatalf("relay ended: %q, want idle", st.reason)
		}
		// Both ends see the connection closed.
		for name, c := range map[string]net.Conn{"client": client, "server": server} {
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Fatalf("%s read %d bytes, %v after the idle close", name, n, err)
			}
		}
	})
}

// TestRelayActivityKeepsAConnectionOpen is the control: a connection that keeps moving, in one
// direction only, outlives several idle periods.
func TestRelayActivityKeepsAConnectionOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, clientSide := net.Pipe()
		brokerSide, server := net.Pipe()
		idle := time.Minute
		done := make(chan relayStats, 1)
		go func() { done <- relay(context.Background(), clientSide, brokerSide, idle) }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		for range 10 {
			if _, err := server.Write([]byte("x")); err != nil {
				t.Fatalf("the relay closed a connection that was moving: %v", err)
			}
			time.Sleep(idle / 2)
		}
		synctest.Wait()
		select {
		case st := <-done:
			t.Fatalf("relay ended after %v of steady traffic: %q", 5*idle, st.reason)
		default:
		}
		server.Close()
		if st := <-done; st.down != 10 {
			t.Fatalf("relayed %d bytes down, want 10", st.down)
		}
		client.Close()
	})
}
