package oidc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults for Config.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 1 << 20
	DefaultEmailClaim       = "email"
	DefaultGroupsClaim      = "groups"
	// maxSecretBytes bounds a client secret file.
	maxSecretBytes = 4 << 10
)

// DefaultScopes are requested when Config.Scopes is empty.
var DefaultScopes = []string{"openid", "email", "profile", "groups"}

// Config says which provider the broker trusts for approvers and how it is registered there.
type Config struct {
	// IssuerURL is the provider's issuer, exactly as its discovery document states it (https).
	IssuerURL string
	// ClientID is the broker's client ID at the provider. ID tokens must name it as their audience.
	ClientID string
	// ClientSecretFile is a file holding the client secret (surrounding whitespace is trimmed).
	// ClientSecretEnv names an environment variable holding it instead. Set at most one; with
	// neither the broker is a public client (the CLI's device flow). The secret is never logged.
	ClientSecretFile string
	ClientSecretEnv  string
	// RedirectURL is the console's callback, registered at the provider. Needed for the code flow
	// only.
	RedirectURL string
	// CAFile is a PEM bundle trusted for the provider's TLS certificate. Empty: the system's roots.
	CAFile string
	// Scopes requested. Default DefaultScopes; "openid" is always included.
	Scopes []string
	// EmailClaim and GroupsClaim name the ID token claims read into Person.Email and Person.Groups.
	// Defaults "email" and "groups".
	EmailClaim  string
	GroupsClaim string
	// AllowUnverifiedEmail accepts a token whose email_verified claim is not true. By default such
	// a token is refused when EmailClaim is "email": an unverified address identifies no one.
	AllowUnverifiedEmail bool
	// Timeout bounds each network call (discovery, keys, token, device). Default DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds each response body from the provider. Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Now is the clock ID token expiry is checked against. Default time.Now.
	Now func() time.Time

	secret string
}

// LogValue keeps the secret out of logs whatever a caller logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", c.IssuerURL), slog.String("client_id", c.ClientID),
		slog.Bool("confidential", c.secret != "" || c.ClientSecretFile != "" || c.ClientSecretEnv != ""))
}

// Validate fills in defaults, reads the client secret and rejects what cannot work, saying what to
// fix.
func (c *Config) Validate() error {
	u, err := url.Parse(c.IssuerURL)
	if c.IssuerURL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("oidc: issuer_url %q must be the provider's https issuer URL", c.IssuerURL)
	}
	if c.ClientID == "" {
		return errors.New("oidc: client_id is required: the broker's client ID at the provider")
	}
	if c.RedirectURL != "" {
		r, err := url.Parse(c.RedirectURL)
		if err != nil || r.Scheme != "https" || r.Host == "" || r.Fragment != "" {
			return fmt.Errorf("oidc: redirect_url %q must be an https URL without a fragment (the console's callback)", c.RedirectURL)
		}
	}
	switch {
	case c.ClientSecretFile != "" && c.ClientSecretEnv != "":
		return errors.New("oidc: set client_secret_file or client_secret_env, not both")
	case c.ClientSecretFile != "":
		if c.secret, err = readSecretFile(c.ClientSecretFile); err != nil {
			return err
		}
	case c.ClientSecretEnv != "":
		c.secret = strings.TrimSpace(os.Getenv(c.ClientSecretEnv))
		if c.secret == "" {
			return fmt.Errorf("oidc: client_secret_env: environment variable %s is empty or unset", c.ClientSecretEnv)
		}
	}
	if len(c.Scopes) == 0 {
		c.Scopes = DefaultScopes
	}
	if !contains(c.Scopes, "openid") {
		c.Scopes = append([]string{"openid"}, c.Scopes...)
	}
	if c.EmailClaim == "" {
		c.EmailClaim = DefaultEmailClaim
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("oidc: client_secret_file: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxSecretBytes+1)
	n, _ := f.Read(b)
	if n > maxSecretBytes {
		return "", fmt.Errorf("oidc: client_secret_file %s is larger than %d bytes; it must hold only the secret", path, maxSecretBytes)
	}
	s := strings.TrimSpace(string(b[:n]))
	if s == "" {
		return "", fmt.Errorf("oidc: client_secret_file %s is empty", path)
	}
	return s, nil
}

// httpClient is the client for every call to the provider: the configured CA, the timeout, and a
// bound on each response body.
func (c *Config) httpClient() (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oidc: ca_file %s holds no PEM certificate", c.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, TLSHandshakeTimeout: c.Timeout, ResponseHeaderTimeout: c.Timeout,
		MaxResponseHeaderBytes: 64 << 10, Proxy: http.ProxyFromEnvironment}
	return &http.Client{
		Timeout:   c.Timeout,
		Transport: &boundedTransport{next: tr, max: c.MaxResponseBytes},
		// The provider's endpoints answer directly; a redirect is not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}
