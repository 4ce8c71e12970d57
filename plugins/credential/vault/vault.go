// Package vault is svidbroker's Vault credential provider. The broker logs in to Vault with its own
// X.509-SVID (the cert auth method; the client certificate is read from the Workload API at each
// handshake, so rotation needs nothing) and obtains dynamic database credentials, one lease per
// session. It speaks to Vault only through github.com/hashicorp/vault/api, so it works the same
// against Vault, OpenBao, or svidbroker's test server.
package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/credential"
)

// Config configures a Provider.
type Config struct {
	// Address is Vault's URL.
	Address string
	// CAFile verifies Vault's certificate.
	CAFile string
	// CertRole is the auth/cert role the broker logs in with.
	CertRole string
	// Mount is where the database secrets engine is mounted. Default "database".
	Mount string
	// SVID supplies the broker's client certificate.
	SVID x509svid.Source
	// Attempts bounds tries of one call when Vault is sealed, rate-limiting or unreachable. Default 3.
	Attempts int
}

// Provider implements credential.Provider with Vault dynamic secrets.
type Provider struct {
	cfg    Config
	client *vaultapi.Client

	mu      sync.Mutex
	expires time.Time // of the current token; zero when logged out
}

var _ credential.Provider = (*Provider)(nil)

// New configures the client. It does not contact Vault until the first call.
func New(cfg Config) (*Provider, error) {
	if cfg.Mount == "" {
		cfg.Mount = "database"
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.SVID == nil || cfg.CertRole == "" {
		return nil, errors.New("vault: an SVID source and a cert auth role are required")
	}
	pemBytes, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("vault: CA file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("vault: CA file %s holds no PEM certificate", cfg.CAFile)
	}
	vc := vaultapi.DefaultConfig()
	vc.Address = cfg.Address
	vc.MaxRetries = 0 // retries are ours: bounded, with jitter, and aware of the caller's deadline
	tr := vc.HttpClient.Transport.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12,
		GetClientCertificate: tlsconfig.GetClientCertificate(cfg.SVID)}
	client, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	client.ClearToken() // never a token from VAULT_TOKEN or ~/.vault-token: only the SVID login
	return &Provider{cfg: cfg, client: client}, nil
}

// login trades the SVID for a token.
func (p *Provider) login(ctx context.Context) error {
	p.client.ClearToken()
	secret, err := p.client.Logical().WriteWithContext(ctx, "auth/cert/login", map[string]any{"name": p.cfg.CertRole})
	if err != nil {
		return fmt.Errorf("vault: cert login: %w", err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return errors.New("vault: cert login returned no token")
	}
	p.client.SetToken(secret.Auth.ClientToken)
	p.expires = time.Now().Add(time.Duration(secret.Auth.LeaseDuration) * time.Second)
	return nil
}

// call runs f with a valid token: it logs in when there is none or it is about to expire, logs in
// again once on 403, and retries sealed (503), rate-limited (429) and transport failures with
// jittered backoff, within ctx and cfg.Attempts.
func (p *Provider) call(ctx context.Context, f func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	relogged := false
	for attempt := 0; attempt < p.cfg.Attempts; attempt++ {
		if attempt > 0 {
			backoff := time.Duration(50*(1<<attempt)+rand.IntN(50)) * time.Millisecond
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(backoff):
			}
		}
		if p.expires.IsZero() || time.Until(p.expires) < 30*time.Second {
			if err = p.login(ctx); err != nil {
				if retryable(err) {
					continue
				}
				return err
			}
		}
		if err = f(); err == nil {
			return nil
		}
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusForbidden && !relogged {
			relogged, p.expires = true, time.Time{} // the token was revoked or expired: log in again
			attempt--
			continue
		}
		if !retryable(err) {
			return err
		}
	}
	return err
}

func retryable(err error) bool {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == http.StatusServiceUnavailable || re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// Acquire reads <mount>/creds/<role>.
func (p *Provider) Acquire(ctx context.Context, role string) (*credential.Lease, error) {
	var secret *vaultapi.Secret
	err := p.call(ctx, func() (err error) {
		secret, err = p.client.Logical().ReadWithContext(ctx, p.cfg.Mount+"/creds/"+role)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("vault: credentials for role %q: %w", role, err)
	}
	if secret == nil || secret.LeaseID == "" {
		return nil, fmt.Errorf("vault: role %q returned no lease", role)
	}
	user, _ := secret.Data["username"].(string)
	pass, _ := secret.Data["password"].(string)
	if user == "" || pass == "" {
		return nil, fmt.Errorf("vault: role %q returned no username or password", role)
	}
	return &credential.Lease{ID: secret.LeaseID, Username: user, Password: pass,
		TTL: time.Duration(secret.LeaseDuration) * time.Second, Renewable: secret.Renewable}, nil
}

// Renew renews a lease by its default increment.
func (p *Provider) Renew(ctx context.Context, leaseID string) (time.Duration, error) {
	var secret *vaultapi.Secret
	err := p.call(ctx, func() (err error) {
		secret, err = p.client.Sys().RenewWithContext(ctx, leaseID, 0)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("vault: renew %s: %w", leaseID, err)
	}
	return time.Duration(secret.LeaseDuration) * time.Second, nil
}

// Revoke revokes a lease.
func (p *Provider) Revoke(ctx context.Context, leaseID string) error {
	if err := p.call(ctx, func() error { return p.client.Sys().RevokeWithContext(ctx, leaseID) }); err != nil {
		return fmt.Errorf("vault: revoke %s: %w", leaseID, err)
	}
	return nil
}
