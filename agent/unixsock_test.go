// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/policy"
)

// TestCheckUnixDir: the target sockets' directory must be the daemon's own
// real directory in a parent nobody else can write to (or a sticky one).
func TestCheckUnixDir(t *testing.T) {
	base := t.TempDir()
	ok := filepath.Join(base, "run", "unix")
	if err := os.MkdirAll(ok, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkUnixDir(ok); err != nil {
		t.Errorf("own directory: %v", err)
	}

	link := filepath.Join(base, "run", "link")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	if err := checkUnixDir(link); !errors.Is(err, ErrUnsafeUnixDir) {
		t.Errorf("symlink: %v, want ErrUnsafeUnixDir", err)
	}

	open := filepath.Join(base, "open")
	if err := os.MkdirAll(filepath.Join(open, "unix"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := checkUnixDir(filepath.Join(open, "unix")); !errors.Is(err, ErrUnsafeUnixDir) {
		t.Errorf("parent writable by others: %v, want ErrUnsafeUnixDir", err)
	}
	if err := os.Chmod(open, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := checkUnixDir(filepath.Join(open, "unix")); err != nil {
		t.Errorf("sticky parent: %v", err)
	}
}

// TestUnixSocketExposure: doctor warns about a protected socket whose
// directory any user may search, and is quiet once it is closed.
func TestUnixSocketExposure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := policy.Config{Targets: []policy.Target{{Name: "db", Protocol: policy.ProtocolPostgres,
		Match: []string{"127.0.0.1:5432", "unix:" + filepath.Join(dir, ".s.PGSQL.5432")}}}}
	if err := unixSocketExposure(cfg); err == nil || !strings.Contains(err.Error(), "has mode 0755") {
		t.Errorf("open directory: %v", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unixSocketExposure(cfg); err != nil {
		t.Errorf("closed directory: %v", err)
	}
	cfg.Targets[0].Match = cfg.Targets[0].Match[:1]
	if err := unixSocketExposure(cfg); err != errNoUnixTargets {
		t.Errorf("no unix target: %v", err)
	}
}
