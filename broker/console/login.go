package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
)

// maxLoginCookie bounds the login cookie read back.
const maxLoginCookie = 2048

// loginSealer keeps a login in progress (its state, nonce and PKCE verifier) in the browser's login
// cookie, sealed with AES-GCM under a key that lives in this process only. The console then holds no
// state for a login, so a flood of /login requests fills no table and locks no one out; the cookie
// cannot be read or forged outside the broker, and the provider redeems its code once.
type loginSealer struct{ aead cipher.AEAD }

func newLoginSealer() (*loginSealer, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &loginSealer{aead: aead}, nil
}

type sealedLogin struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"`
}

// seal returns the cookie value for l, valid until exp.
func (s *loginSealer) seal(l oidc.Login, exp time.Time) string {
	plain, _ := json.Marshal(sealedLogin{State: l.State, Nonce: l.Nonce, Verifier: l.CodeVerifier, Expires: exp.Unix()})
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(loginCookie)))
}

// open returns the login sealed in v, if it is genuine and has not expired at now.
func (s *loginSealer) open(v string, now time.Time) (oidc.Login, bool) {
	if len(v) > maxLoginCookie {
		return oidc.Login{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return oidc.Login{}, false
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(loginCookie))
	if err != nil {
		return oidc.Login{}, false
	}
	var sl sealedLogin
	if json.Unmarshal(plain, &sl) != nil || !now.Before(time.Unix(sl.Expires, 0)) {
		return oidc.Login{}, false
	}
	return oidc.Login{State: sl.State, Nonce: sl.Nonce, CodeVerifier: sl.Verifier}, true
}
