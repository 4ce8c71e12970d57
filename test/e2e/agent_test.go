package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// An agent is this test binary run again as an agent persona (its own uid, so SPIRE attests it like
// any agent). It gets its SVID from the Workload API with go-spiffe, keeps it rotated, verifies the
// broker's SPIFFE ID exactly, and queries through the broker for a while, reporting what happened.
const (
	agentEnv     = "SVIDBROKER_E2E_AGENT" // JSON agentParams
	brokerIDName = "spiffe://example.org/svidbroker"
)

type agentParams struct {
	Addr     string        `json:"addr"`
	Duration time.Duration `json:"duration"`
}

type agentReport struct {
	OK, Failed    int
	Errors        []string
	ClientSerials map[string]bool // the agent's own SVIDs it presented
	BrokerSerials map[string]bool // the broker's SVIDs it saw
}

func agentMain() {
	raw, ok := os.LookupEnv(agentEnv)
	if !ok {
		return
	}
	var p agentParams
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rep, err := runAgent(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

func runAgent(p agentParams) (*agentReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.Duration+time.Minute)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	rep := &agentReport{ClientSerials: map[string]bool{}, BrokerSerials: map[string]bool{}}
	var mu sync.Mutex
	tlsCfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(brokerIDName)))
	getCert := tlsCfg.GetClientCertificate
	tlsCfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := getCert(cri)
		if err == nil {
			if leaf, perr := x509.ParseCertificate(c.Certificate[0]); perr == nil {
				mu.Lock()
				rep.ClientSerials[leaf.SerialNumber.String()] = true
				mu.Unlock()
			}
		}
		return c, err
	}
	tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		rep.BrokerSerials[cs.PeerCertificates[0].SerialNumber.String()] = true
		mu.Unlock()
		return nil
	}
	_, port, err := net.SplitHostPort(p.Addr)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig("host=localhost dbname=shop user=agent port=" + port)
	if err != nil {
		return nil, err
	}
	cfg.TLSConfig, cfg.Fallbacks = tlsCfg, nil
	poolCfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	poolCfg.ConnConfig = cfg
	// Pooled sessions are recycled well within an SVID's half-life, as an agent should configure its
	// pool when sessions end with the SVID that opened them.
	poolCfg.MaxConnLifetime, poolCfg.MaxConnLifetimeJitter = 15*time.Second, 2*time.Second
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			rep.Failed++
			if len(rep.Errors) < 10 {
				rep.Errors = append(rep.Errors, err.Error())
			}
			return
		}
		rep.OK++
	}
	for end := time.Now().Add(p.Duration); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		// A fresh connection each time, and a pooled one.
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := pgx.ConnectConfig(qctx, cfg)
		if err == nil {
			var n int
			err = conn.QueryRow(qctx, "SELECT count(*) FROM customers").Scan(&n)
			conn.Close(qctx)
		}
		record(err)
		var n int
		record(pool.QueryRow(qctx, "SELECT count(*) FROM orders").Scan(&n))
		cancel()
	}
	return rep, nil
}

// runAgentAs runs an agent as persona against addr for d and returns its report.
func runAgentAs(ctx context.Context, cmd *exec.Cmd, addr string, d time.Duration) (*agentReport, error) {
	params, _ := json.Marshal(agentParams{Addr: addr, Duration: d})
	cmd.Env = append(cmd.Env, agentEnv+"="+string(params))
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("agent: %v: %s", err, ee.Stderr)
		}
		return nil, err
	}
	var rep agentReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("agent output %q: %w", out, err)
	}
	return &rep, nil
}
