package oidcprovider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// MaxConfigBytes bounds the size of a configuration file.
const MaxConfigBytes = 1 << 20

// Config is the provider's users, clients and token lifetimes, as read from its JSON file:
//
//	{
//	  "users": [{"username": "approver@example.com", "password": "…", "email": "approver@example.com",
//	             "email_verified": true, "name": "Ada Approver", "groups": ["dba", "security"]}],
//	  "clients": [{"id": "console", "secret": "…", "type": "web", "redirect_uris": ["https://127.0.0.1:8443/callback"]},
//	              {"id": "cli", "type": "native"}],
//	  "id_token_lifetime": "5m"
//	}
type Config struct {
	// Users may log in on the login page.
	Users []User `json:"users"`
	// Clients are the registered relying parties.
	Clients []Client `json:"clients"`
	// IDTokenLifetime is how long ID and access tokens live, as a Go duration ("5m"). Default 5m.
	IDTokenLifetime string `json:"id_token_lifetime,omitempty"`
	// DevicePollInterval is the interval a device-flow client is told to poll at ("1s"). Default 5s.
	DevicePollInterval string `json:"device_poll_interval,omitempty"`
	// DeviceCodeLifetime is how long a device code may be approved ("5m"). Default 5m.
	DeviceCodeLifetime string `json:"device_code_lifetime,omitempty"`

	idTokenLifetime, pollInterval, deviceLifetime time.Duration
}

// User is one person who can log in.
type User struct {
	// Username is what the login form asks for; usually the email address.
	Username string `json:"username"`
	// Password is compared as given: this provider is for tests and demos only.
	Password string `json:"password"`
	// Subject is the ID token's sub claim. Default: the username.
	Subject       string   `json:"subject,omitempty"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Name          string   `json:"name,omitempty"`
	Groups        []string `json:"groups,omitempty"`
}

// Client is one registered relying party.
type Client struct {
	ID string `json:"id"`
	// Secret authenticates a "web" client at the token endpoint (client_secret_basic or _post). A
	// "native" client has none.
	Secret string `json:"secret,omitempty"`
	// Type is "web" (a confidential server-side client, such as the broker's console) or "native" (a
	// public client, such as a CLI using the device flow).
	Type string `json:"type"`
	// RedirectURIs are the exact redirect URIs the authorization-code flow may return to. A "web"
	// client needs at least one, and they must be https.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
}

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: read %s: %w", path, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return cfg, nil
}

// ParseConfig decodes and validates a configuration. Unknown fields are refused, so that a
// misspelt one ("emial") is not silently ignored.
func ParseConfig(b []byte) (*Config, error) {
	if len(b) > MaxConfigBytes {
		return nil, fmt.Errorf("oidcprovider: the configuration is larger than %d bytes", MaxConfigBytes)
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("oidcprovider: %w", err)
	}
	if dec.More() {
		return nil, errors.New("oidcprovider: the configuration holds more than one JSON value")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate fills in defaults and rejects what the provider cannot serve, naming the entry and field.
func (c *Config) Validate() error {
	var err error
	if c.idTokenLifetime, err = duration("id_token_lifetime", c.IDTokenLifetime, 5*time.Minute); err != nil {
		return err
	}
	if c.pollInterval, err = duration("device_poll_interval", c.DevicePollInterval, 5*time.Second); err != nil {
		return err
	}
	if c.deviceLifetime, err = duration("device_code_lifetime", c.DeviceCodeLifetime, 5*time.Minute); err != nil {
		return err
	}
	if c.pollInterval%time.Second != 0 {
		return fmt.Errorf("oidcprovider: device_poll_interval %q must be whole seconds: the device flow counts in seconds", c.DevicePollInterval)
	}
	if len(c.Users) == 0 {
		return errors.New("oidcprovider: no users: add at least one to \"users\"")
	}
	seenUser, seenSub := map[string]bool{}, map[string]bool{}
	for i := range c.Users {
		u := &c.Users[i]
		if u.Username == "" || u.Password == "" {
			return fmt.Errorf("oidcprovider: users[%d]: username and password are required", i)
		}
		if u.Subject == "" {
			u.Subject = u.Username
		}
		if seenUser[u.Username] || seenSub[u.Subject] {
			return fmt.Errorf("oidcprovider: users[%d]: username %q or subject %q is used twice", i, u.Username, u.Subject)
		}
		seenUser[u.Username], seenSub[u.Subject] = true, true
	}
	if len(c.Clients) == 0 {
		return errors.New("oidcprovider: no clients: add at least one to \"clients\"")
	}
	seenClient := map[string]bool{}
	for i, cl := range c.Clients {
		if cl.ID == "" || seenClient[cl.ID] {
			return fmt.Errorf("oidcprovider: clients[%d]: id %q is empty or used twice", i, cl.ID)
		}
		seenClient[cl.ID] = true
		switch cl.Type {
		case "web":
			if cl.Secret == "" {
				return fmt.Errorf("oidcprovider: clients[%d] (%s): a web client needs a secret", i, cl.ID)
			}
			if len(cl.RedirectURIs) == 0 {
				return fmt.Errorf("oidcprovider: clients[%d] (%s): a web client needs redirect_uris", i, cl.ID)
			}
		case "native":
			if cl.Secret != "" {
				return fmt.Errorf("oidcprovider: clients[%d] (%s): a native client is public and has no secret; remove it or make the client \"web\"", i, cl.ID)
			}
		default:
			return fmt.Errorf("oidcprovider: clients[%d] (%s): type %q must be \"web\" or \"native\"", i, cl.ID, cl.Type)
		}
		for _, r := range cl.RedirectURIs {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" || u.Fragment != "" || (u.Scheme != "https" && !(cl.Type == "native" && u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
				return fmt.Errorf("oidcprovider: clients[%d] (%s): redirect URI %q must be an absolute https URL without a fragment (a native client may use http on loopback)", i, cl.ID, r)
			}
		}
	}
	return nil
}

func duration(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("oidcprovider: %s %q must be a positive duration such as \"5m\"", field, s)
	}
	return d, nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// user returns the user with this username, if any.
func (c *Config) user(username string) (User, bool) {
	i := slices.IndexFunc(c.Users, func(u User) bool { return u.Username == username })
	if i < 0 {
		return User{}, false
	}
	return c.Users[i], true
}

// userBySubject returns the user with this subject, if any.
func (c *Config) userBySubject(sub string) (User, bool) {
	i := slices.IndexFunc(c.Users, func(u User) bool { return u.Subject == sub })
	if i < 0 {
		return User{}, false
	}
	return c.Users[i], true
}

// scopesString is for pages that show what a client asks for.
func scopesString(s []string) string { return strings.Join(s, " ") }
