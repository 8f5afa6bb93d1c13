// SPDX-License-Identifier: Apache-2.0

package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	for _, tt := range []struct {
		data string
		perm os.FileMode
	}{{"first\n", 0o600}, {"second, longer\n", 0o644}} {
		if err := WriteFile(path, []byte(tt.data), tt.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		st, _ := os.Stat(path)
		if err != nil || string(got) != tt.data || st.Mode().Perm() != tt.perm {
			t.Errorf("after WriteFile(%q, %o): %q, mode %o, %v", tt.data, tt.perm, got, st.Mode().Perm(), err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	// A directory where the file should be: the rename fails, nothing is
	// left behind.
	sub := filepath.Join(dir, "sub")
	os.MkdirAll(filepath.Join(sub, "taken"), 0o700)
	os.WriteFile(filepath.Join(sub, "taken", "x"), nil, 0o600)
	if err := WriteFile(filepath.Join(sub, "taken"), []byte("x"), 0o600); err == nil {
		t.Error("WriteFile over a non-empty directory succeeded")
	}
	if entries, _ := os.ReadDir(sub); len(entries) != 1 {
		t.Errorf("after a failed WriteFile: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "key"), nil, 0o600); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

// TestWriteFromFails: what fill returns is the error, and the file keeps
// its content.
func TestWriteFromFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFrom(path, 0o600, func(w io.Writer) error {
		io.WriteString(w, "half")
		return boom
	})
	if got, _ := os.ReadFile(path); err != boom || string(got) != "old" {
		t.Fatalf("WriteFrom with a failing fill: %v, file %q", err, got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}
