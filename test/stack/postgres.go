package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// PGBinDir is where Debian's postgresql-15 package installs its server programs.
const PGBinDir = "/usr/lib/postgresql/15/bin"

// BrokerDBRole is the PostgreSQL role that a client certificate with this common name logs in as through
// `cert` authentication; the stack grants it the demo tables. See Postgres.TrustCAPath.
const BrokerDBRole = "svidbroker"

// Postgres is a running throwaway PostgreSQL cluster.
type Postgres struct {
	Host string
	Port int
	// CAPath is the PEM file of the CA that signed the server's certificate; clients verify the server
	// with sslmode=verify-full against it.
	CAPath string
	// SocketDir holds the cluster's unix socket.
	SocketDir string
	// Superuser is the bootstrap superuser's name. Its password is generated per run.
	Superuser string

	password string
	proc     *process
}

// PostgresConfig tunes the PostgreSQL part of the stack.
type PostgresConfig struct {
	// ClientCAPath, if set, is a PEM bundle of CAs whose client certificates the cluster accepts for
	// `cert` authentication as BrokerDBRole on database "shop" (the stack passes SPIRE's bundle).
	ClientCAPath string
}

// SuperuserPassword returns the generated superuser password. It exists for test servers that manage
// roles (the Vault-compatible server); never log it.
func (p *Postgres) SuperuserPassword() string { return p.password }

// ConnConfig returns a pgx config for the superuser on database db, over TLS with verify-full.
func (p *Postgres) ConnConfig(db string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=verify-full sslrootcert=%s",
		p.Host, p.Port, db, p.Superuser, p.CAPath))
	if err != nil {
		return nil, fmt.Errorf("stack: postgres config: %w", err)
	}
	cfg.Password = p.password
	return cfg, nil
}

// Connect opens a superuser connection to db.
func (p *Postgres) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := p.ConnConfig(db)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// pgOwner returns the credentials PostgreSQL runs with: it refuses to run as root, so as root the stack
// runs it as the "postgres" user the Debian package creates.
func pgOwner() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("stack: postgres refuses to run as root and there is no postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Stack) startPostgres(ctx context.Context, cfg PostgresConfig) error {
	initdb, err := pgTool("initdb")
	if err != nil {
		return err
	}
	postgres, err := pgTool("postgres")
	if err != nil {
		return err
	}
	owner, err := pgOwner()
	if err != nil {
		return err
	}
	base := filepath.Join(s.Dir, "postgres")
	data := filepath.Join(base, "data")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	port, err := postgresPort()
	if err != nil {
		return err
	}
	pw := make([]byte, 18)
	if _, err := rand.Read(pw); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	// The CA certificate is public; it sits outside the cluster's 0700 directory so that personas (the
	// broker among them) can read it.
	pg := &Postgres{Host: "127.0.0.1", Port: port, CAPath: filepath.Join(s.Dir, "postgres-ca.pem"),
		SocketDir: base, Superuser: "postgres", password: hex.EncodeToString(pw)}
	s.Postgres = pg

	sc, err := newServerCert("localhost")
	if err != nil {
		return err
	}
	if err := os.WriteFile(pg.CAPath, sc.caPEM, 0o644); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	files := map[string][]byte{
		"server.crt": sc.certPEM, "server.key": sc.keyPEM,
		"pwfile": []byte(pg.password + "\n"),
	}
	if cfg.ClientCAPath != "" {
		b, err := os.ReadFile(cfg.ClientCAPath)
		if err != nil {
			return fmt.Errorf("stack: postgres client CA: %w", err)
		}
		files["client-ca.pem"] = b
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(base, name), b, 0o600); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	if owner != nil {
		if err := ChownTree(base, int(owner.Uid), int(owner.Gid)); err != nil {
			return err
		}
	}

	cmd := exec.CommandContext(ctx, initdb, "-D", data, "-U", pg.Superuser, "-A", "scram-sha-256",
		"--pwfile", filepath.Join(base, "pwfile"), "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stack: postgres did not start: initdb: %w\n%s", err, lastLines(string(out), 25))
	}
	_ = os.Remove(filepath.Join(base, "pwfile"))

	conf := []string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(port),
		"unix_socket_directories = '" + base + "'",
		"ssl = on",
		"ssl_cert_file = '" + filepath.Join(base, "server.crt") + "'",
		"ssl_key_file = '" + filepath.Join(base, "server.key") + "'",
		"password_encryption = 'scram-sha-256'",
		"log_connections = on",
		"log_disconnections = on",
		// A throwaway cluster: durability is not worth the time it costs here.
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"shared_buffers = 32MB",
	}
	// First matching line wins. There is no plaintext ("host") line, so non-TLS connections are refused.
	hba := []string{"local all " + pg.Superuser + " scram-sha-256"}
	if cfg.ClientCAPath != "" {
		conf = append(conf, "ssl_ca_file = '"+filepath.Join(base, "client-ca.pem")+"'")
		hba = append(hba, "hostssl shop "+BrokerDBRole+" 127.0.0.1/32 cert")
	}
	hba = append(hba, "hostssl all all 127.0.0.1/32 scram-sha-256")
	if err := appendFile(filepath.Join(data, "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(strings.Join(hba, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	if owner != nil {
		if err := os.Chown(filepath.Join(data, "pg_hba.conf"), int(owner.Uid), int(owner.Gid)); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}

	for attempt := 1; ; attempt++ {
		cmd = exec.Command(postgres, "-D", data)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner}
		// SIGINT is PostgreSQL's "fast" shutdown: it ends sessions and stops without waiting for clients.
		if pg.proc, err = s.launch("postgres", cmd, syscall.SIGINT); err != nil {
			return err
		}
		err = waitFor(ctx, pg.proc, "a TLS connection on port "+strconv.Itoa(port), func(ctx context.Context) error {
			c, err := pg.Connect(ctx, "postgres")
			if err != nil {
				return err
			}
			return c.Close(ctx)
		})
		if err == nil {
			break
		}
		// freePort's port was free when it looked, but another process (a test package running
		// beside this one picks ports the same way) can bind it before PostgreSQL does. When
		// PostgreSQL exited and its port is taken, it starts again on another port.
		if exited, _ := pg.proc.exited(); !exited || attempt == maxPortAttempts || !portTaken(port) {
			return err
		}
		if port, err = postgresPort(); err != nil {
			return err
		}
		pg.Port = port
		if err := appendFile(filepath.Join(data, "postgresql.conf"), "port = "+strconv.Itoa(port)+"\n"); err != nil {
			return err
		}
	}
	if err := pg.seed(ctx); err != nil {
		return pg.proc.failure(err)
	}
	return nil
}

// postgresPort picks the port PostgreSQL listens on (freePort; a test makes it pick a taken one).
var postgresPort = freePort

// maxPortAttempts bounds how often PostgreSQL is started again on another port when its own was
// taken before it could bind it.
const maxPortAttempts = 3

// portTaken reports whether another process listens on 127.0.0.1:port.
func portTaken(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	_ = l.Close()
	return false
}

func pgTool(name string) (string, error) {
	p := filepath.Join(PGBinDir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("stack: %s not found at %s: install Debian's postgresql-15 (apt-get install postgresql-15)", name, p)
	}
	return p, nil
}

// ChownTree gives a directory tree to uid and gid, so that a persona (the broker) can use it.
func ChownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n# added by svidbroker's test stack\n" + text); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
