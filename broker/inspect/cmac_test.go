package inspect

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// cmacMessage is the message of RFC 4493's examples; they take its first 0, 16, 40 and 64 bytes.
const cmacMessage = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51" +
	"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"

// TestCMACVectors checks AES-CMAC against the examples of RFC 4493 (AES-128) and NIST SP 800-38B
// (AES-256), the latter the key size the hash strategy uses.
func TestCMACVectors(t *testing.T) {
	msg, _ := hex.DecodeString(cmacMessage)
	for _, v := range []struct {
		key, k1, k2 string
		tags        [4]string // for the message's first 0, 16, 40 and 64 bytes
	}{
		{"2b7e151628aed2a6abf7158809cf4f3c", "fbeed618357133667c85e08f7236a8de", "f7ddac306ae266ccf90bc11ee46d513b",
			[4]string{"bb1d6929e95937287fa37d129b756746", "070a16b46b4d4144f79bdd9dd04a287c",
				"dfa66747de9ae63030ca32611497c827", "51f0bebf7e3b9d92fc49741779363cfe"}},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "cad1ed03299eedac2e9a99808621502f",
			"95a3da06533ddb585d3533010c42a0d9",
			[4]string{"028962f61b7bf89efc6b551f4667d983", "28a7023f452e8f82bd4bf28d8c37c35c",
				"aaf3d8f1de5640c232f5b169b9c911e6", "e1992190549f6ed5696a2c056c315410"}},
	} {
		key, _ := hex.DecodeString(v.key)
		k, err := newCMACKeyAES(key)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(k.k1[:]); got != v.k1 {
			t.Errorf("key %s: K1 = %s, want %s", v.key, got, v.k1)
		}
		if got := hex.EncodeToString(k.k2[:]); got != v.k2 {
			t.Errorf("key %s: K2 = %s, want %s", v.key, got, v.k2)
		}
		c := &cmac{key: k}
		for i, n := range []int{0, 16, 40, 64} {
			if got := hex.EncodeToString(c.sum(msg[:n])[:]); got != v.tags[i] {
				t.Errorf("key %s, %d bytes: tag %s, want %s", v.key, n, got, v.tags[i])
			}
		}
	}
}

// referenceCMAC is AES-CMAC built on crypto/cipher's CBC mode, as SP 800-38B defines it: the CBC-MAC of
// the message, whose last block is first padded (if incomplete) and masked with subkey K1 or K2.
func referenceCMAC(k *cmacKey, m []byte) []byte {
	n := (len(m) + aes.BlockSize - 1) / aes.BlockSize
	complete := n > 0 && len(m)%aes.BlockSize == 0
	if n == 0 {
		n = 1
	}
	buf := make([]byte, n*aes.BlockSize)
	copy(buf, m)
	subkey := k.k1[:]
	if !complete {
		buf[len(m)] = 0x80
		subkey = k.k2[:]
	}
	last := buf[(n-1)*aes.BlockSize:]
	for i := range last {
		last[i] ^= subkey[i]
	}
	cipher.NewCBCEncrypter(k.block, make([]byte, aes.BlockSize)).CryptBlocks(buf, buf)
	return buf[len(buf)-aes.BlockSize:]
}

// TestCMACMatchesCBC checks the tag of messages of every length up to five blocks, and a long one,
// against referenceCMAC.
func TestCMACMatchesCBC(t *testing.T) {
	k, err := newCMACKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c := &cmac{key: k}
	msg := make([]byte, 5000)
	rand.Read(msg)
	for _, n := range append(seq(5*aes.BlockSize+1), len(msg)) {
		if got, want := c.sum(msg[:n])[:], referenceCMAC(k, msg[:n]); !bytes.Equal(got, want) {
			t.Errorf("%d bytes: tag %x, CBC reference %x", n, got, want)
		}
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// BenchmarkHash compares the hash strategy's AES-CMAC with the HMAC-SHA-256 it replaced, on a value of
// the size of an email address, each into a reused buffer as a Scratch masks row after row.
func BenchmarkHash(b *testing.B) {
	key := bytes.Repeat([]byte{7}, 32)
	v := []byte("customer123456@example.com")
	b.Run("hmac-sha256", func(b *testing.B) {
		h := hmac.New(sha256.New, key)
		var sum [sha256.Size]byte
		for b.Loop() {
			h.Reset()
			h.Write(v)
			h.Sum(sum[:0])
		}
	})
	b.Run("aes-cmac", func(b *testing.B) {
		m, _ := NewMasker(key)
		sc := m.NewScratch()
		for b.Loop() {
			sc.mac.sum(v)
		}
	})
}
