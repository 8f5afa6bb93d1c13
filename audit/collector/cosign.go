// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// algCosignatureV1 is the signed-note signature type of C2SP
// tlog-cosignature's Ed25519 cosignature/v1; it is also the algorithm byte
// of the collector's key texts.
const algCosignatureV1 = 0x04

// Cosigner signs C2SP cosignature/v1 lines over host checkpoints with the
// collector's Ed25519 key. It implements note.Signer, so note.Sign can add
// its line to a note; Cosign is the direct form.
type Cosigner struct {
	name string
	hash uint32
	priv ed25519.PrivateKey
	// now is the clock (tests set it).
	now func() time.Time
	// VerifierKey is the public key text, "<name>+<hash>+<base64(0x04 ‖ key)>".
	VerifierKey string
}

// cosignKeyHash is the key ID of a cosignature/v1 key:
// SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4].
func cosignKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{algCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

// GenerateCosignKey returns new signer and verifier key texts for a
// collector named name (a schema-less URL or any name without spaces or
// '+').
func GenerateCosignKey(name string) (skey, vkey string, err error) {
	if !validKeyName(name) {
		return "", "", fmt.Errorf("cosigner name %q: %w", name, ErrBadKey)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate cosigner key: %w", err)
	}
	hash := cosignKeyHash(name, pub)
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, hash,
		base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, priv.Seed()...)))
	vkey = fmt.Sprintf("%s+%08x+%s", name, hash,
		base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, pub...)))
	return skey, vkey, nil
}

func validKeyName(name string) bool {
	return name != "" && !strings.ContainsAny(name, " \t\n+") && strings.ToValidUTF8(name, "") == name
}

// splitKey splits "<name>+<hash>+<base64>" and checks the algorithm byte
// and the key hash against the key material.
func splitKey(text string, size int) (name string, hash uint32, key []byte, err error) {
	parts := strings.SplitN(text, "+", 3)
	if len(parts) != 3 || !validKeyName(parts[0]) || len(parts[1]) != 8 {
		return "", 0, nil, ErrBadKey
	}
	h, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return "", 0, nil, ErrBadKey
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+size || raw[0] != algCosignatureV1 {
		return "", 0, nil, ErrBadKey
	}
	return parts[0], uint32(h), raw[1:], nil
}

// ParseCosigner returns the cosigner of signer key text
// ("PRIVATE+KEY+<name>+<hash>+<base64(0x04 ‖ seed)>").
func ParseCosigner(skey string) (*Cosigner, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(skey), "PRIVATE+KEY+")
	if !ok {
		return nil, fmt.Errorf("cosigner key: not a private key: %w", ErrBadKey)
	}
	name, hash, seed, err := splitKey(rest, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("cosigner key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	if cosignKeyHash(name, pub) != hash {
		return nil, fmt.Errorf("cosigner key: key hash does not match the key: %w", ErrBadKey)
	}
	return &Cosigner{name: name, hash: hash, priv: priv, now: time.Now,
		VerifierKey: fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, pub...)))}, nil
}

// LoadOrCreateCosigner reads the collector's signing key from path,
// creating it (0600, named name) and path+".pub" (0644, the verifier key
// auditors and hosts use) the first time. A key file that others than its
// owner can read is refused.
func LoadOrCreateCosigner(path, name string) (*Cosigner, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, _, gerr := GenerateCosignKey(name)
		if gerr != nil {
			return nil, gerr
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		if _, err := f.WriteString(skey + "\n"); err != nil {
			f.Close()
			return nil, fmt.Errorf("signing key: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("signing key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		b = []byte(skey)
	} else if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	} else if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %#o: others than its owner can read it; chmod 600 it", path, fi.Mode().Perm())
	}
	c, err := ParseCosigner(string(b))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	pub := []byte(c.VerifierKey + "\n")
	if old, err := os.ReadFile(path + ".pub"); err != nil || !bytes.Equal(old, pub) {
		if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
	}
	return c, nil
}

// Name returns the cosigner's key name (note.Signer).
func (c *Cosigner) Name() string { return c.name }

// KeyHash returns the cosignature/v1 key ID (note.Signer).
func (c *Cosigner) KeyHash() uint32 { return c.hash }

// Sign returns the timestamped signature over a note's text (note.Signer):
// the signing time as 8 big-endian bytes, then the Ed25519 signature over
// "cosignature/v1\ntime <unix seconds>\n" followed by the text.
func (c *Cosigner) Sign(text []byte) ([]byte, error) {
	ts := uint64(c.now().Unix())
	sig := ed25519.Sign(c.priv, cosignedMessage(ts, text))
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(sig)), ts)
	return append(out, sig...), nil
}

// cosignedMessage is what a cosignature/v1 signs.
func cosignedMessage(ts uint64, text []byte) []byte {
	m := []byte("cosignature/v1\ntime " + strconv.FormatUint(ts, 10) + "\n")
	return append(m, text...)
}

// Cosign returns the signature line ("— <name> <base64>\n") that cosigns
// the signed note msg; appended to msg it makes the cosigned checkpoint.
func (c *Cosigner) Cosign(msg []byte) (string, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return "", fmt.Errorf("cosign: not a signed note")
	}
	sig, err := c.Sign(msg[:i+1])
	if err != nil {
		return "", err
	}
	b := binary.BigEndian.AppendUint32(nil, c.hash)
	return "— " + c.name + " " + base64.StdEncoding.EncodeToString(append(b, sig...)) + "\n", nil
}

// CosignVerifier verifies cosignature/v1 lines made by one collector key.
// It implements note.Verifier.
type CosignVerifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

// NewCosignVerifier parses verifier key text ("<name>+<hash>+<base64(0x04
// ‖ key)>", the content of the collector's signing_key.pub).
func NewCosignVerifier(vkey string) (*CosignVerifier, error) {
	name, hash, pub, err := splitKey(strings.TrimSpace(vkey), ed25519.PublicKeySize)
	if err != nil {
		return nil, fmt.Errorf("collector verifier key: %w", err)
	}
	if cosignKeyHash(name, pub) != hash {
		return nil, fmt.Errorf("collector verifier key: key hash does not match the key: %w", ErrBadKey)
	}
	return &CosignVerifier{name: name, hash: hash, pub: pub}, nil
}

// Name returns the key name (note.Verifier).
func (v *CosignVerifier) Name() string { return v.name }

// KeyHash returns the key ID (note.Verifier).
func (v *CosignVerifier) KeyHash() uint32 { return v.hash }

// Verify reports whether sig is a cosignature/v1 by this key over text
// (note.Verifier).
func (v *CosignVerifier) Verify(text, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	if ts > 1<<63-1 {
		return false
	}
	return ed25519.Verify(v.pub, cosignedMessage(ts, text), sig[8:])
}

// VerifyCosigned checks that the note msg carries a valid cosignature by
// v's key and returns the time it was made. Other signatures are ignored.
func VerifyCosigned(msg []byte, v *CosignVerifier) (time.Time, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return time.Time{}, fmt.Errorf("cosignature of %s: %w", v.name, err)
	}
	for _, s := range n.Sigs {
		if s.Name == v.name && s.Hash == v.hash {
			raw, err := base64.StdEncoding.DecodeString(s.Base64)
			if err == nil && len(raw) >= 12 {
				return time.Unix(int64(binary.BigEndian.Uint64(raw[4:12])), 0).UTC(), nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("cosignature of %s: not found", v.name)
}
