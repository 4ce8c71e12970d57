package audit

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// MinMACKeyBytes is the shortest MAC key accepted.
const MinMACKeyBytes = 32

// Key file names written by GenerateKeys.
const (
	MACKeyFile      = "mac.key"
	SigningKeyFile  = "signing.key"
	VerifierKeyFile = "verifier.key"
)

// GenerateKeys writes a new MAC key and ed25519 checkpoint key pair into dir: mac.key and signing.key
// (0600, for the broker; auditors need mac.key too) and verifier.key (public).
func GenerateKeys(dir, name string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	mac := make([]byte, MinMACKeyBytes)
	if _, err := rand.Read(mac); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for file, content := range map[string]struct {
		b    []byte
		mode os.FileMode
	}{MACKeyFile: {mac, 0o600}, SigningKeyFile: {[]byte(skey + "\n"), 0o600}, VerifierKeyFile: {[]byte(vkey + "\n"), 0o644}} {
		path := filepath.Join(dir, file)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, content.mode)
		if err != nil {
			return fmt.Errorf("audit: %w (keys are never overwritten)", err)
		}
		if _, err := f.Write(content.b); err != nil {
			f.Close()
			return fmt.Errorf("audit: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	return nil
}

// LoadMACKey reads a MAC key file.
func LoadMACKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: MAC key: %w", err)
	}
	if len(b) < MinMACKeyBytes {
		return nil, fmt.Errorf("audit: MAC key %s is %d bytes, need at least %d", path, len(b), MinMACKeyBytes)
	}
	return b, nil
}

// LoadSigner reads a note signing key file.
func LoadSigner(path string) (note.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: signing key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("audit: signing key %s: %w", path, err)
	}
	return s, nil
}

// LoadVerifier reads a note verifier key file.
func LoadVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key %s: %w", path, err)
	}
	return v, nil
}
