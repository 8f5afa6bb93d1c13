// SPDX-License-Identifier: Apache-2.0

package ship

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCosignedTornLine: a crash in the middle of an append leaves a torn
// last line; opening drops it, keeps the entries before it, and appends
// after them.
func TestCosignedTornLine(t *testing.T) {
	dir := t.TempDir()
	cl, err := openCosigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Cosigned{{Size: 3, Checkpoint: []byte("a")}, {Size: 7, Checkpoint: []byte("b")}} {
		if err := cl.append(c); err != nil {
			t.Fatal(err)
		}
	}
	cl.f.WriteString(`{"size":9,"checkp`)
	cl.f.Close()

	cl, err = openCosigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cl.last == nil || cl.last.Size != 7 {
		t.Fatalf("last after reopen: %+v", cl.last)
	}
	if err := cl.append(Cosigned{Size: 9, Checkpoint: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	cl.f.Close()
	all, err := ReadCosigned(dir)
	if err != nil || len(all) != 3 || all[2].Size != 9 || string(all[1].Checkpoint) != "b" {
		t.Fatalf("read back %+v %v", all, err)
	}
}

func TestCredentialMode(t *testing.T) {
	dir := t.TempDir()
	if c, err := loadCredential(dir); c != nil || err != nil {
		t.Fatalf("no file: %v %v", c, err)
	}
	want := &credential{URL: "http://127.0.0.1:1", Credential: "tgc_x", CollectorKey: "k"}
	if err := saveCredential(dir, want); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, CredentialFile))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if got, err := loadCredential(dir); err != nil || *got != *want {
		t.Fatalf("load: %+v %v", got, err)
	}
	os.Chmod(filepath.Join(dir, CredentialFile), 0o644)
	if _, err := loadCredential(dir); err == nil {
		t.Fatal("readable credential accepted")
	}
}
