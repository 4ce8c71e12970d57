package oidc

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "secret")
	if err := os.WriteFile(good, []byte("  s3cret \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("x"), maxSecretBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OIDC_TEST_SECRET", "from-env")
	base := Config{IssuerURL: "https://idp.example.com", ClientID: "console"}
	for _, tc := range []struct {
		name   string
		tweak  func(*Config)
		err    string // a part of the error; empty for none
		secret string
	}{
		{"public client", func(*Config) {}, "", ""},
		{"secret file, trimmed", func(c *Config) { c.ClientSecretFile = good }, "", "s3cret"},
		{"secret env", func(c *Config) { c.ClientSecretEnv = "OIDC_TEST_SECRET" }, "", "from-env"},
		{"both secrets", func(c *Config) { c.ClientSecretFile, c.ClientSecretEnv = good, "OIDC_TEST_SECRET" }, "not both", ""},
		{"unset env", func(c *Config) { c.ClientSecretEnv = "OIDC_TEST_UNSET" }, "OIDC_TEST_UNSET is empty or unset", ""},
		{"empty file", func(c *Config) { c.ClientSecretFile = empty }, "is empty", ""},
		{"huge file", func(c *Config) { c.ClientSecretFile = huge }, "larger than", ""},
		{"missing file", func(c *Config) { c.ClientSecretFile = filepath.Join(dir, "nope") }, "client_secret_file", ""},
		{"http issuer", func(c *Config) { c.IssuerURL = "http://idp.example.com" }, "https issuer URL", ""},
		{"no client", func(c *Config) { c.ClientID = "" }, "client_id is required", ""},
		{"http redirect", func(c *Config) { c.RedirectURL = "http://console/cb" }, "redirect_url", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.tweak(&c)
			err := c.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.secret != tc.secret || c.Scopes[0] != "openid" || c.EmailClaim != "email" || c.GroupsClaim != "groups" || c.Timeout != DefaultTimeout {
					t.Fatalf("validated config = %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestSecretStaysOutOfLogs(t *testing.T) {
	c := Config{IssuerURL: "https://idp.example.com", ClientID: "console", ClientSecretEnv: "OIDC_TEST_SECRET"}
	t.Setenv("OIDC_TEST_SECRET", "very-secret-value")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "oidc", c)
	if strings.Contains(buf.String(), "very-secret-value") || !strings.Contains(buf.String(), `"confidential":true`) {
		t.Fatalf("log line: %s", buf.String())
	}
}

func TestDiscoveryMustNameTheConfiguredIssuer(t *testing.T) {
	l, ca := startProvider(t, providerConfig())
	// The same provider, addressed as localhost: its discovery names 127.0.0.1.
	wrong := strings.Replace(l.Issuer(), "127.0.0.1", "localhost", 1)
	_, err := New(t.Context(), Config{IssuerURL: wrong, ClientID: "cli", CAFile: ca})
	if !errors.Is(err, ErrProvider) || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("err = %v, want ErrProvider about the issuer", err)
	}
	if _, err := New(t.Context(), Config{IssuerURL: l.Issuer(), ClientID: "cli", CAFile: ca}); err != nil {
		t.Fatalf("control: %v", err)
	}
	// Without the provider's CA the broker does not trust it.
	if _, err := New(t.Context(), Config{IssuerURL: l.Issuer(), ClientID: "cli"}); !errors.Is(err, ErrProvider) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate error", err)
	}
}

func TestProviderResponsesAreBounded(t *testing.T) {
	big := bytes.Repeat([]byte(" "), 4096)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A discovery document padded past the limit, streamed (no Content-Length).
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"issuer":"x"`))
		for range 64 {
			w.Write(big)
			w.(http.Flusher).Flush()
		}
		w.Write([]byte(`}`))
	}))
	caPEM, cert, err := oidcprovider.LoopbackCert()
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(t.Context(), Config{IssuerURL: srv.URL, ClientID: "cli", CAFile: ca, MaxResponseBytes: 64 << 10})
	if !errors.Is(err, ErrProvider) || !strings.Contains(err.Error(), "max_response_bytes") {
		t.Fatalf("err = %v, want a max_response_bytes refusal", err)
	}
	// Control: with room for it, the document is read (and refused for its issuer, "x").
	_, err = New(t.Context(), Config{IssuerURL: srv.URL, ClientID: "cli", CAFile: ca, MaxResponseBytes: 1 << 20})
	if err == nil || strings.Contains(err.Error(), "max_response_bytes") || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("err = %v, want an issuer mismatch", err)
	}
}
