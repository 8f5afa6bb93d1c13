// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

// Names of the host key files in the state directory.
const (
	// HostKeyFile holds the host's checkpoint signing key, in the signed
	// note private key format ("PRIVATE+KEY+<name>+<hash>+<key>"), mode
	// 0600.
	HostKeyFile = "host.key"
	// HostPubFile holds the matching verifier key text
	// ("<name>+<hash>+<key>" and a newline), mode 0644. Auditors verify
	// checkpoints and evidence bundles with it.
	HostPubFile = "host.pub"
)

// keyNamePrefix starts every host key name: "tollgate/<host-id>".
const keyNamePrefix = "tollgate/"

// HostKey is a host's Ed25519 checkpoint signing key.
type HostKey struct {
	// Signer signs checkpoints.
	Signer note.Signer
	// VerifierKey is the verifier key text, "<name>+<hash>+<key>": the
	// content of host.pub without the newline.
	VerifierKey string
}

// KeyName returns the name of a host's key: "tollgate/<host-id>". One key
// signs every log (epoch) of the host; the checkpoint origin names the log.
func KeyName(hostID string) string { return keyNamePrefix + hostID }

// LoadOrCreateHostKey returns the host key in dir, creating host.key (0600)
// and host.pub (0644) with a new Ed25519 key the first time. host.pub is
// rewritten from host.key if it is missing or differs. It fails with
// ErrKeyMismatch if host.key belongs to another host id, and refuses a
// host.key that others than its owner can read.
func LoadOrCreateHostKey(dir, hostID string) (*HostKey, error) {
	if err := checkHostID(hostID); err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	keyPath := filepath.Join(dir, HostKeyFile)
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		skey, _, gerr := note.GenerateKey(rand.Reader, KeyName(hostID))
		if gerr != nil {
			return nil, fmt.Errorf("generate host key: %w", gerr)
		}
		if err := atomicfile.WriteFile(keyPath, []byte(skey+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		b = []byte(skey + "\n")
	} else if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	} else if fi, err := os.Stat(keyPath); err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s has mode %#o: others than its owner can read it; chmod 600 it", keyPath, fi.Mode().Perm())
	}
	k, err := ParseHostKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", keyPath, err)
	}
	if k.Signer.Name() != KeyName(hostID) {
		return nil, fmt.Errorf("host key %s is named %q, not %q: %w", keyPath, k.Signer.Name(), KeyName(hostID), ErrKeyMismatch)
	}
	pubPath := filepath.Join(dir, HostPubFile)
	if pub, err := os.ReadFile(pubPath); err != nil || !bytes.Equal(pub, []byte(k.VerifierKey+"\n")) {
		if err := atomicfile.WriteFile(pubPath, []byte(k.VerifierKey+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("host public key: %w", err)
		}
	}
	return k, nil
}

// ParseHostKey returns the host key of signer key text
// ("PRIVATE+KEY+<name>+<hash>+<key>", as in host.key).
func ParseHostKey(skey string) (*HostKey, error) {
	skey = strings.TrimSpace(skey)
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	vkey, err := verifierKeyOf(skey)
	if err != nil {
		return nil, err
	}
	return &HostKey{Signer: signer, VerifierKey: vkey}, nil
}

// verifierKeyOf derives the verifier key text from signer key text
// "PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>".
func verifierKeyOf(skey string) (string, error) {
	rest, ok := strings.CutPrefix(skey, "PRIVATE+KEY+")
	if !ok {
		return "", errors.New("not a signed note private key")
	}
	parts := strings.SplitN(rest, "+", 3)
	if len(parts) != 3 {
		return "", errors.New("malformed signed note private key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 signed note private key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[0], pub)
}

// ParseVerifierKey parses verifier key text ("<name>+<hash>+<key>", as in
// host.pub); surrounding white space is ignored.
func ParseVerifierKey(text string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("verifier key %q: %w", strings.TrimSpace(text), err)
	}
	return v, nil
}
