// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
