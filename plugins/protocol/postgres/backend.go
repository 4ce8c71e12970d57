package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
)

// DefaultConnectTimeout bounds connecting and logging in to a backend.
const DefaultConnectTimeout = 10 * time.Second

// Backend is the PostgreSQL server behind a target.
type Backend struct {
	// Address is host:port.
	Address string
	// Database is the only database sessions of this target use.
	Database string
	// User is the role the broker logs in as.
	User string
	// TLS verifies the backend (RootCAs, ServerName) and, for `cert` authentication, presents the
	// broker's SVID (GetClientCertificate). Required: the broker never talks to a backend in plaintext.
	TLS *tls.Config
	// ConnectTimeout bounds the connection and login. Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Lease, if set, gives each session a credential of its own (a Vault dynamic secret): the broker
	// logs in with it through SCRAM instead of as User with its SVID. role is the credential role
	// PickRole picked, or "" without PickRole. end must be called if the credential cannot be kept;
	// the session then ends.
	Lease func(ctx context.Context, c authz.Connect, role string, end func(error)) (*credential.Session, error)
	// PickRole, if set, picks each session's credential role (authz.Authorizer.PickRole: Cedar's pick
	// among the target's catalog credential roles), which Lease is then given. A caller it picks no
	// role for is refused at connect.
	PickRole func(ctx context.Context, c authz.Connect) (authz.RolePick, error)
}

func (b *Backend) validate() error {
	if _, _, err := net.SplitHostPort(b.Address); err != nil {
		return fmt.Errorf("postgres: backend address: %w", err)
	}
	if b.Database == "" || (b.User == "" && b.Lease == nil) {
		return errors.New("postgres: backend database, and a user or a lease, are required")
	}
	if b.PickRole != nil && b.Lease == nil {
		return errors.New("postgres: a backend whose credential role is picked needs Lease")
	}
	if b.TLS == nil || b.TLS.InsecureSkipVerify || b.TLS.RootCAs == nil {
		return errors.New("postgres: backend TLS must verify the server (RootCAs set, InsecureSkipVerify off)")
	}
	if b.ConnectTimeout <= 0 {
		b.ConnectTimeout = DefaultConnectTimeout
	}
	return nil
}

// forwardedParams are the startup parameters a client may set for its session. Anything else is
// refused: "options" and unknown parameters can set arbitrary server settings, and "user" is replaced
// by the SVID's identity.
var forwardedParams = map[string]bool{
	"application_name":   true,
	"client_encoding":    true,
	"datestyle":          true,
	"timezone":           true,
	"extra_float_digits": true,
	"intervalstyle":      true,
}

// runtimeParams checks the client's startup parameters against the target and returns those to send
// to the backend. The database is the target's: a client may name it or leave it empty, but may not
// name another, since the backend would otherwise pick one on its own.
func (b *Backend) runtimeParams(client map[string]string, target string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range client {
		switch lk := strings.ToLower(k); {
		case lk == "user":
			// Ignored: the SVID says who the client is.
		case lk == "database":
			if v != "" && v != b.Database && v != target {
				return nil, fmt.Errorf("this target (%s) serves database %q, not %q", target, b.Database, v)
			}
		case lk == "client_encoding" && !safeClientEncoding(v):
			// In encodings such as SJIS or BIG5 a multibyte character can end in a quote or backslash
			// byte, so the server would not read the statement the broker parsed.
			return nil, fmt.Errorf("client_encoding %q is not allowed: use UTF8", v)
		case forwardedParams[lk]:
			out[lk] = v
		default:
			return nil, fmt.Errorf("startup parameter %q is not allowed", k)
		}
	}
	return out, nil
}

// ConnectSVID opens a pgx connection that logs in with the broker's SVID (tlsCfg presents it) and
// nothing else: the same hardened settings as backend sessions, for the broker's own use of a database
// (its audit sink).
func ConnectSVID(ctx context.Context, address, database, user string, tlsCfg *tls.Config) (*pgx.Conn, error) {
	b := &Backend{Address: address, Database: database, User: user, TLS: tlsCfg}
	if err := b.validate(); err != nil {
		return nil, err
	}
	cfg, err := b.pgconnConfig(nil, DefaultMaxMessageBytes, user, "")
	if err != nil {
		return nil, err
	}
	connCfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	connCfg.Config = *cfg
	ctx, cancel := context.WithTimeout(ctx, b.ConnectTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, connCfg)
}

// DefaultMaxMessageBytes bounds messages on the broker's own connections.
const DefaultMaxMessageBytes = 1 << 20

// pgconnConfig is the hardened connection configuration for logging in as b.User.
// With a password (a leased credential), only SCRAM is accepted; without one, the server must not ask
// for any password at all (the SVID is the credential).
func (b *Backend) pgconnConfig(params map[string]string, maxMessageBytes int, user, password string) (*pgconn.Config, error) {
	host, portStr, _ := net.SplitHostPort(b.Address)
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("postgres: backend port: %w", err)
	}
	// ParseConfig reads PG* environment variables and the password file; every field that matters is
	// overwritten below, so nothing in the broker's environment can add a credential or a plaintext
	// fallback.
	cfg, err := pgconn.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	cfg.Host, cfg.Port = host, uint16(port)
	cfg.Database, cfg.User, cfg.Password = b.Database, user, password
	cfg.TLSConfig = b.TLS.Clone()
	cfg.SSLNegotiation, cfg.SSLCertMode = "postgres", ""
	cfg.Fallbacks = nil
	cfg.RuntimeParams = params
	cfg.ConnectTimeout = b.ConnectTimeout
	cfg.MaxProtocolMessageBodyLen = maxMessageBytes
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	cfg.KerberosSrvName, cfg.KerberosSpn = "", ""
	cfg.OAuthTokenProvider = nil
	cfg.RequireAuth = "none"
	if password != "" {
		cfg.RequireAuth = "scram-sha-256"
	}
	cfg.AfterNetConnect, cfg.AfterConnect, cfg.ValidateConnect = nil, nil, nil
	return cfg, nil
}

// connect logs in to the backend and hands back the raw connection, idle.
// before, if set, runs on the connection before it is handed over (the broker's own metadata queries).
func (b *Backend) connect(ctx context.Context, params map[string]string, maxMessageBytes int, user, password string, before func(*pgconn.PgConn) error) (*pgconn.HijackedConn, error) {
	cfg, err := b.pgconnConfig(params, maxMessageBytes, user, password)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.ConnectTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: backend %s: %w", b.Address, err)
	}
	if before != nil {
		if err := before(pc); err != nil {
			pc.Close(ctx)
			return nil, err
		}
	}
	// pgconn may still be reading in the background (it does when a write is slow): the session reads
	// the connection directly, so nothing may be read, or buffered, behind its back.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	hc.Frontend.SetMaxBodyLen(maxMessageBytes)
	return hc, nil
}

// safeClientEncoding reports whether the server reads statements in encoding v byte for byte as the
// broker's parser does: UTF-8, or SQL_ASCII (which the server still checks against its own encoding).
func safeClientEncoding(v string) bool {
	switch strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(v), "-", "")) {
	case "UTF8", "UNICODE", "SQL_ASCII", "SQLASCII":
		return true
	}
	return false
}

// checkParameter refuses backend settings under which the server would not read statements as the
// broker's parser does: standard_conforming_strings off (backslashes escape in '...' strings) and a
// client encoding whose multibyte characters can contain quote or backslash bytes. A role or database
// default could set either, whatever the client asked for.
func checkParameter(name, value string) error {
	switch strings.ToLower(name) {
	case "standard_conforming_strings":
		if !strings.EqualFold(value, "on") {
			return fmt.Errorf("the backend has standard_conforming_strings = %q; the broker requires on", value)
		}
	case "client_encoding":
		if !safeClientEncoding(value) {
			return fmt.Errorf("the backend has client_encoding = %q; the broker requires UTF8", value)
		}
	}
	return nil
}
