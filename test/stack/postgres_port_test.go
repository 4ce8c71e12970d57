package stack

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestPostgresMovesOffATakenPort: another process binds the port the stack picked for PostgreSQL
// before PostgreSQL can (as a test package running beside this one may): PostgreSQL, unable to listen,
// is started again on another port, and serves there.
func TestPostgresMovesOffATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	picks := 0
	postgresPort = func() (int, error) {
		if picks++; picks == 1 {
			return taken, nil
		}
		return freePort()
	}
	defer func() { postgresPort = freePort }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := StartPostgres(ctx)
	if err != nil {
		t.Fatalf("PostgreSQL did not start on another port: %v", err)
	}
	defer s.Close()
	if picks != 2 || s.Postgres.Port == taken {
		t.Fatalf("PostgreSQL serves on port %d after %d picks; %d was taken", s.Postgres.Port, picks, taken)
	}
	c, err := s.Postgres.Connect(ctx, "postgres")
	if err != nil {
		t.Fatalf("PostgreSQL on its new port: %v", err)
	}
	c.Close(ctx)
	if !portTaken(taken) || !portTaken(s.Postgres.Port) {
		t.Fatal("portTaken does not see a port in use")
	}
	free, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if portTaken(free) {
		t.Fatalf("portTaken sees the free port %d in use", free)
	}
}
