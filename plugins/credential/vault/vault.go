// Package vault is svidbroker's Vault credential provider. The broker logs in to Vault with its own
// SPIFFE identity and obtains backend credentials for sessions:
//
//   - login: the cert auth method with its X.509-SVID (the client certificate is read from the
//     Workload API at each handshake, so rotation needs nothing), or the jwt auth method with a
//     JWT-SVID fetched for the configured audience at each login. A static token exists only as an
//     explicit development setting. The token is renewed (renew-self) while it may be, and the
//     broker logs in again when it expires or Vault answers 403.
//   - credentials: dynamic ones (the database engine's creds/<role>, or any path that returns a secret
//     with a lease), renewed and revoked through sys/leases; or, explicitly weaker, a kv-v2 secret.
//
// It speaks to Vault only through github.com/hashicorp/vault/api, so it works the same against Vault,
// OpenBao, or svidbroker's test server. ConfigValidator checks the configuration's vault block.
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

// Login methods.
const (
	MethodCert  = "cert"
	MethodJWT   = "jwt"
	MethodToken = "token" // development only: a static token
)

// Config configures a Provider.
type Config struct {
	// Address is Vault's URL.
	Address string
	// CAFile verifies Vault's certificate.
	CAFile string
	// Method is how the broker logs in: MethodCert, MethodJWT or MethodToken.
	Method string
	// AuthMount is the auth method's path. Default: the method's name ("cert" or "jwt").
	AuthMount string
	// Role is the auth role the broker logs in with (cert and jwt).
	Role string
	// SVID supplies the broker's client certificate: the credential of cert logins, and presented
	// to Vault with every method when set.
	SVID x509svid.Source
	// JWTSVID fetches a JWT-SVID for an audience (jwt logins).
	JWTSVID func(ctx context.Context, audience string) (string, error)
	// Audience is the JWT-SVID's audience, the one the jwt role's bound_audiences names.
	Audience string
	// Token is the static token of MethodToken. Development only.
	Token string
	// Attempts bounds tries of one call when Vault is sealed, rate-limiting or unreachable. Default 3.
	Attempts int
}

// Provider implements credential.Provider with Vault.
type Provider struct {
	cfg    Config
	client *vaultapi.Client

	// mu guards the token's state; requests made with the token run outside it, concurrently.
	mu sync.Mutex
	// The current token: when it expires (zero: logged out; forever for a token without TTL), the
	// TTL it was issued or last renewed with, whether it may be renewed, and its generation (one per
	// login), so that a 403 seen with an old token does not discard a newer one.
	expires   time.Time
	ttl       time.Duration
	renewable bool
	gen       uint64
	// logins and renewals count token logins and renew-self calls.
	logins, renewals int
}

var _ credential.Provider = (*Provider)(nil)

// New configures the client. It does not contact Vault until the first call.
func New(cfg Config) (*Provider, error) {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.AuthMount == "" {
		cfg.AuthMount = cfg.Method
	}
	switch cfg.Method {
	case MethodCert:
		if cfg.SVID == nil || cfg.Role == "" {
			return nil, errors.New("vault: cert login needs an SVID source and a role")
		}
	case MethodJWT:
		if cfg.JWTSVID == nil || cfg.Role == "" || cfg.Audience == "" {
			return nil, errors.New("vault: jwt login needs a JWT-SVID source, a role and an audience")
		}
	case MethodToken:
		if cfg.Token == "" {
			return nil, errors.New("vault: the token method needs a token")
		}
	default:
		return nil, fmt.Errorf("vault: unknown login method %q", cfg.Method)
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
	tlsCfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cfg.SVID != nil {
		tlsCfg.GetClientCertificate = tlsconfig.GetClientCertificate(cfg.SVID)
	}
	vc.HttpClient.Transport.(*http.Transport).TLSClientConfig = tlsCfg
	client, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	client.ClearToken() // never a token from VAULT_TOKEN or ~/.vault-token
	return &Provider{cfg: cfg, client: client}, nil
}

// login obtains a token: a cert or jwt login, or, for the static development token, a lookup of it.
func (p *Provider) login(ctx context.Context) error {
	p.client.ClearToken()
	p.expires = time.Time{}
	p.logins++
	p.gen++
	var (
		secret *vaultapi.Secret
		err    error
	)
	switch p.cfg.Method {
	case MethodCert:
		secret, err = p.client.Logical().WriteWithContext(ctx, "auth/"+p.cfg.AuthMount+"/login", map[string]any{"name": p.cfg.Role})
	case MethodJWT:
		var jwt string
		if jwt, err = p.cfg.JWTSVID(ctx, p.cfg.Audience); err != nil {
			return fmt.Errorf("vault: no JWT-SVID for audience %q: %w", p.cfg.Audience, err)
		}
		secret, err = p.client.Logical().WriteWithContext(ctx, "auth/"+p.cfg.AuthMount+"/login", map[string]any{"role": p.cfg.Role, "jwt": jwt})
	case MethodToken:
		return p.lookupStatic(ctx)
	}
	if err != nil {
		return fmt.Errorf("vault: %s login: %w", p.cfg.Method, err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return fmt.Errorf("vault: %s login returned no token", p.cfg.Method)
	}
	p.client.SetToken(secret.Auth.ClientToken)
	p.setTTL(time.Duration(secret.Auth.LeaseDuration)*time.Second, secret.Auth.Renewable)
	return nil
}

// lookupStatic learns the static token's TTL and renewability.
func (p *Provider) lookupStatic(ctx context.Context) error {
	p.client.SetToken(p.cfg.Token)
	secret, err := p.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		p.client.ClearToken()
		return fmt.Errorf("vault: static token: %w", err)
	}
	ttl, err := secret.TokenTTL()
	if err != nil {
		p.client.ClearToken()
		return fmt.Errorf("vault: static token: %w", err)
	}
	renewable, _ := secret.TokenIsRenewable()
	p.setTTL(ttl, renewable)
	return nil
}

func (p *Provider) setTTL(ttl time.Duration, renewable bool) {
	p.ttl, p.renewable = ttl, renewable
	if ttl <= 0 {
		p.expires = time.Now().Add(100 * 365 * 24 * time.Hour) // a token without TTL does not expire
		p.renewable = false
		return
	}
	p.expires = time.Now().Add(ttl)
}

// ensureToken logs in when there is no token or it is about to expire, and renews a renewable token
// past half its TTL; a renewal that fails is followed by a login. It returns the token's generation.
func (p *Provider) ensureToken(ctx context.Context) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	left := time.Until(p.expires)
	if p.expires.IsZero() || left < min(30*time.Second, p.ttl/5) {
		return p.gen, p.login(ctx)
	}
	if !p.renewable || left >= p.ttl/2 {
		return p.gen, nil
	}
	p.renewals++
	secret, err := p.client.Auth().Token().RenewSelfWithContext(ctx, int(p.ttl/time.Second))
	if err != nil || secret == nil || secret.Auth == nil {
		return p.gen, p.login(ctx)
	}
	if d := time.Duration(secret.Auth.LeaseDuration) * time.Second; d > left {
		p.expires = time.Now().Add(d) // capped by the token's max TTL: once it stops growing, the next login comes
	}
	return p.gen, nil
}

// forget marks the token of generation gen as unusable, so that the next call logs in again.
func (p *Provider) forget(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen == gen {
		p.expires = time.Time{}
	}
}

// call runs f with a valid token: it logs in or renews as needed, logs in again once on 403, and
// retries sealed (503), rate-limited (429) and transport failures with jittered backoff, within ctx
// and cfg.Attempts.
func (p *Provider) call(ctx context.Context, f func() error) error {
	var err error
	relogged := false
	for attempt := 0; attempt < p.cfg.Attempts; attempt++ {
		if attempt > 0 {
			backoff := time.Duration(50<<min(attempt, 5)+rand.IntN(50)) * time.Millisecond // at most 1.6s apart
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(backoff):
			}
		}
		var gen uint64
		if gen, err = p.ensureToken(ctx); err != nil {
			if retryable(err) {
				continue
			}
			return err
		}
		if err = f(); err == nil {
			return nil
		}
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusForbidden && !relogged {
			relogged = true
			p.forget(gen) // the token was revoked or expired: log in again
			attempt--
			continue
		}
		if !retryable(err) {
			return err
		}
	}
	return err
}

// transient marks an error call would have retried (Vault sealed, rate limiting, failing or
// unreachable) as credential.ErrTransient, so that the broker retries too; it leaves any other as is.
func transient(err error) error {
	if retryable(err) {
		return fmt.Errorf("%w: %w", credential.ErrTransient, err)
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

// Acquire reads a credential from src.
func (p *Provider) Acquire(ctx context.Context, src credential.Source) (*credential.Lease, error) {
	userKey, passKey := src.UsernameKey, src.PasswordKey
	if userKey == "" {
		userKey = "username"
	}
	if passKey == "" {
		passKey = "password"
	}
	var (
		data  map[string]any
		lease *credential.Lease
	)
	err := p.call(ctx, func() error {
		if src.Kind == credential.Static {
			kv, err := p.client.KVv2(src.Mount).Get(ctx, src.Path)
			if err != nil {
				return err
			}
			data, lease = kv.Data, &credential.Lease{Static: true}
			return nil
		}
		secret, err := p.client.Logical().ReadWithContext(ctx, src.Path)
		if err != nil {
			return err
		}
		if secret == nil || secret.LeaseID == "" {
			return errors.New("the path returned no lease (use a kv-v2 source for static secrets)")
		}
		data, lease = secret.Data, &credential.Lease{ID: secret.LeaseID,
			TTL: time.Duration(secret.LeaseDuration) * time.Second, Renewable: secret.Renewable}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vault: credential from %s: %w", src, transient(err))
	}
	if !src.TokenOnly {
		lease.Username, _ = data[userKey].(string)
	}
	lease.Password, _ = data[passKey].(string)
	if (lease.Username == "" && !src.TokenOnly) || lease.Password == "" {
		if !lease.Static {
			p.revokeQuietly(lease.ID)
		}
		if src.TokenOnly {
			return nil, fmt.Errorf("vault: %s returned no %q string", src, passKey)
		}
		return nil, fmt.Errorf("vault: %s returned no %q or %q string", src, userKey, passKey)
	}
	return lease, nil
}

// revokeQuietly revokes a lease the broker cannot use; a failure leaves it to expire in Vault.
func (p *Provider) revokeQuietly(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.Revoke(ctx, id)
}

// Renew renews a lease by its default increment.
func (p *Provider) Renew(ctx context.Context, leaseID string) (time.Duration, error) {
	var secret *vaultapi.Secret
	err := p.call(ctx, func() (err error) {
		secret, err = p.client.Sys().RenewWithContext(ctx, leaseID, 0)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("vault: renew %s: %w", leaseID, transient(err))
	}
	return time.Duration(secret.LeaseDuration) * time.Second, nil
}

// Revoke revokes a lease.
func (p *Provider) Revoke(ctx context.Context, leaseID string) error {
	if err := p.call(ctx, func() error { return p.client.Sys().RevokeWithContext(ctx, leaseID) }); err != nil {
		return fmt.Errorf("vault: revoke %s: %w", leaseID, transient(err))
	}
	return nil
}

// Counts reports the logins and token renewals so far.
func (p *Provider) Counts() (logins, renewals int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logins, p.renewals
}
