package inspect

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
)

// The hash strategy's pseudonyms are AES-CMAC tags (NIST SP 800-38B, RFC 4493): a PRF, so equal values
// get equal tags and nobody without the key can compute one. Nor can they invert one, except by having
// candidate values tagged with the same key and comparing: a small set of possible values (a 4-digit
// code) falls to that at once, which is why only a plain column's stored values are ever hashed (see
// Hash). CMAC is used rather than
// HMAC-SHA-256 because it is fast where masking needs it: a column value is one or two AES blocks,
// which AES-NI encrypts in a few nanoseconds each, where an HMAC always costs two SHA-256 blocks at the
// least (about 4× as long per value, measured by BenchmarkHash). Masking runs on every masked value of
// every result row, so this is most of what a masked result costs beyond the hop. Go's AES is constant
// time where the CPU has AES instructions (amd64 with AES-NI, arm64 with the cryptography extension);
// on CPUs without them it falls back to table lookups, which are not.

// hashKeyInfo labels the AES-256 key derived from the configured hash key (HKDF-SHA-256). Deriving it
// lets the configured key be any length of at least MinHashKeyBytes, and keeps it for this one use.
const hashKeyInfo = "svidbroker mask hash AES-256-CMAC v1"

// cmacKey is the shared, read-only part of AES-CMAC: the cipher and the two subkeys. cipher.Block from
// crypto/aes is safe for concurrent use.
type cmacKey struct {
	block  cipher.Block
	k1, k2 [aes.BlockSize]byte
}

// newCMACKey derives the AES-256 key from the configured hash key and computes CMAC's subkeys.
func newCMACKey(key []byte) (*cmacKey, error) {
	aesKey, err := hkdf.Key(sha256.New, key, nil, hashKeyInfo, 32)
	if err != nil {
		return nil, err
	}
	return newCMACKeyAES(aesKey)
}

// newCMACKeyAES keys AES-CMAC with an AES key as is (16, 24 or 32 bytes); the RFC 4493 and SP 800-38B
// test vectors use it.
func newCMACKeyAES(aesKey []byte) (*cmacKey, error) {
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, err
	}
	c := &cmacKey{block: block}
	var l [aes.BlockSize]byte
	block.Encrypt(l[:], l[:])
	double(&c.k1, &l)
	double(&c.k2, &c.k1)
	return c, nil
}

// double sets dst to src doubled in GF(2^128), as SP 800-38B generates subkeys.
func double(dst, src *[aes.BlockSize]byte) {
	var carry byte
	for i := aes.BlockSize - 1; i >= 0; i-- {
		next := src[i] >> 7
		dst[i] = src[i]<<1 | carry
		carry = next
	}
	// In constant time: 0x87 when the top bit was set, else 0.
	dst[aes.BlockSize-1] ^= 0x87 & -carry
}

// cmac computes AES-CMAC tags with its key. It holds the working blocks, so that a tag costs no
// allocation; it is not safe for concurrent use (each Scratch has its own).
type cmac struct {
	key  *cmacKey
	x    [aes.BlockSize]byte // the chaining value
	last [aes.BlockSize]byte // the final block, padded and masked with a subkey
}

// sum sets c.x to the tag of m.
func (c *cmac) sum(m []byte) *[aes.BlockSize]byte {
	k := c.key
	c.x = [aes.BlockSize]byte{}
	for len(m) > aes.BlockSize { // every block but the last
		subtle.XORBytes(c.x[:], c.x[:], m[:aes.BlockSize])
		k.block.Encrypt(c.x[:], c.x[:])
		m = m[aes.BlockSize:]
	}
	if len(m) == aes.BlockSize { // a complete last block (an empty message is an incomplete one)
		subtle.XORBytes(c.last[:], m, k.k1[:])
	} else {
		c.last = [aes.BlockSize]byte{}
		copy(c.last[:], m)
		c.last[len(m)] = 0x80
		subtle.XORBytes(c.last[:], c.last[:], k.k2[:])
	}
	subtle.XORBytes(c.x[:], c.x[:], c.last[:])
	k.block.Encrypt(c.x[:], c.x[:])
	return &c.x
}
