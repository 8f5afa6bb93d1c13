// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/tollgate-dev/tollgate/policy"
)

// ErrKeyFile means a TLS private key file is not safe to use: readable by
// others than root, not a regular file, or not owned by root.
var ErrKeyFile = errors.New("unsafe key file")

// loadClientTLS builds the TLS config a postgres target offers its clients,
// or returns nil when the target offers none.
func loadClientTLS(t *policy.ClientTLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	keyPEM, err := readKeyFile(t.KeyFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(t.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tls cert_file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls cert_file %s and key_file %s: %w", t.CertFile, t.KeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// readKeyFile reads a private key file that only root can read.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tls key_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("tls key_file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("tls key_file %s: %w: not a regular file", path, ErrKeyFile)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("tls key_file %s: %w: mode %#o, want 0600 or stricter (chmod 600)", path, ErrKeyFile, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 {
		return nil, fmt.Errorf("tls key_file %s: %w: not owned by root (chown root)", path, ErrKeyFile)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return nil, fmt.Errorf("tls key_file: %w", err)
	}
	return b, nil
}
