// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestLoadClientTLSRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadClientTLS(&policy.ClientTLS{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: key})
	if !errors.Is(err, ErrKeyFile) {
		t.Fatalf("key file mode 0644: got %v, want ErrKeyFile", err)
	}
	if cfg, err := loadClientTLS(nil); cfg != nil || err != nil {
		t.Fatalf("no tls: got %v, %v", cfg, err)
	}
}

func TestLoadClientTLSMissingFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := loadClientTLS(&policy.ClientTLS{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key file: got %v, want ErrNotExist", err)
	}
}
