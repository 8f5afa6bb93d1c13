// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallKnownHosts(t *testing.T) {
	ca, err := LoadCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	line := ca.KnownHostsLine("*")
	other := "[10.0.0.5]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther"
	oldCA := "@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld tollgate-host-ca"
	otherCA := "@cert-authority *.corp ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICorp corp-ca"
	for _, tt := range []struct {
		name, before string // before "-" means no file
		mode         os.FileMode
		want         string
	}{
		{"new file", "-", 0o644, line + "\n"},
		{"appended", other + "\n", 0o600, other + "\n" + line + "\n"},
		{"no final newline", other, 0o644, other + "\n" + line + "\n"},
		{"replaces the old line only", oldCA + "\n" + otherCA + "\n" + other + "\n", 0o644, otherCA + "\n" + other + "\n" + line + "\n"},
	} {
		path := filepath.Join(t.TempDir(), "ssh_known_hosts")
		if tt.before != "-" {
			if err := os.WriteFile(path, []byte(tt.before), tt.mode); err != nil {
				t.Fatal(err)
			}
		}
		changed, err := InstallKnownHosts(path, line)
		got, _ := os.ReadFile(path)
		if err != nil || !changed || string(got) != tt.want {
			t.Errorf("%s: changed %v, err %v, file:\n%s\nwant:\n%s", tt.name, changed, err, got, tt.want)
			continue
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != tt.mode {
			t.Errorf("%s: mode %o, want %o", tt.name, st.Mode().Perm(), tt.mode)
		}
		// Again: nothing to do.
		if changed, err := InstallKnownHosts(path, line); changed || err != nil {
			t.Errorf("%s: second install changed %v, err %v", tt.name, changed, err)
		}
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
			t.Errorf("%s: left files behind: %v", tt.name, entries)
		}
	}
	if _, err := InstallKnownHosts(filepath.Join(t.TempDir(), "missing", "known_hosts"), line); err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Errorf("a directory that does not exist: %v", err)
	}
}
