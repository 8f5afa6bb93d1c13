// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"

	"github.com/tollgate-dev/tollgate/internal/secretfile"
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

// maxKeyFile bounds a PEM private key file.
const maxKeyFile = 1 << 20

// readKeyFile reads a private key file that only root can read.
func readKeyFile(path string) ([]byte, error) {
	b, err := secretfile.Read(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key_file %s: %w: %w", path, ErrKeyFile, err)
	}
	return b, nil
}
