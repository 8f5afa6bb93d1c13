// SPDX-License-Identifier: Apache-2.0

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDebPackage builds the deb with `make package`, installs it with dpkg,
// checks what it put where, and removes it again.
func TestDebPackage(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatalf("dpkg not found: %v", err)
	}
	if _, err := os.Stat("/usr/bin/tollgate"); err == nil {
		t.Fatal("/usr/bin/tollgate exists already; refusing to overwrite an installed tollgate")
	}
	mk := exec.Command("make", "-C", "..", "package", "VERSION=0.0.0-e2e")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob("../dist/tollgate_0.0.0~e2e_*.deb")
	if len(debs) != 1 {
		t.Fatalf("debs: %v", debs)
	}
	deb, _ := filepath.Abs(debs[0])
	t.Cleanup(func() {
		exec.Command("dpkg", "-P", "tollgate").Run()
		os.Remove(deb)
		os.Remove(strings.Replace(deb, "_0.0.0~e2e_amd64.deb", "-0.0.0~e2e-1.x86_64.rpm", 1))
	})
	// Installed with TOLLGATE_SSH_KNOWN_HOSTS, the package puts the host
	// CA line into that file and keeps the lines that were there. The CA
	// it makes in /var/lib/tollgate is removed after, unless it was there.
	for _, f := range []string{"ssh_host_ca", "ssh_user_ca"} {
		p := filepath.Join("/var/lib/tollgate", f)
		if _, err := os.Stat(p); err != nil {
			t.Cleanup(func() { os.Remove(p) })
		}
	}
	knownHosts := filepath.Join(t.TempDir(), "ssh_known_hosts")
	const otherHost = "[10.0.0.5]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther\n"
	if err := os.WriteFile(knownHosts, []byte(otherHost), 0o644); err != nil {
		t.Fatal(err)
	}
	install := exec.Command("dpkg", "-i", deb)
	install.Env = append(os.Environ(), "TOLLGATE_SSH_KNOWN_HOSTS="+knownHosts)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	caLine, err := exec.Command("/usr/bin/tollgate", "ssh", "known-hosts").Output()
	if got, _ := os.ReadFile(knownHosts); err != nil || !strings.HasPrefix(string(caLine), "@cert-authority * ssh-ed25519 ") ||
		string(got) != otherHost+string(caLine) {
		t.Errorf("known_hosts after install with TOLLGATE_SSH_KNOWN_HOSTS (%v):\n%s\nwant:\n%s%s", err, got, otherHost, caLine)
	}
	for _, f := range []string{"/usr/bin/tollgate", "/usr/lib/systemd/system/tollgate.service", "/etc/tollgate/tollgate.yaml"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if st, err := os.Stat("/var/lib/tollgate"); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("/var/lib/tollgate: %v %v", st, err)
	}
	if out, err := exec.Command("getent", "group", "tollgate").CombinedOutput(); err != nil {
		t.Errorf("group tollgate: %v %s", err, out)
	}
	// The man page and the completions are installed and work.
	if out, err := exec.Command("man", "-P", "cat", "-l", "/usr/share/man/man8/tollgate.8.gz").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "policy and tamper-evident audit") || !strings.Contains(string(out), "completion") {
		t.Errorf("man page: %v\n%s", err, out)
	}
	for _, f := range []string{"/usr/share/zsh/vendor-completions/_tollgate", "/usr/share/fish/vendor_completions.d/tollgate.fish"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	out, err := exec.Command("bash", "-c", `source /usr/share/bash-completion/completions/tollgate
COMP_WORDS=(tollgate audit ex); COMP_CWORD=2; _tollgate; echo "${COMPREPLY[*]}"`).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "export" {
		t.Errorf("bash completion of \"tollgate audit ex\": %v %q", err, out)
	}
	// The shipped default config is valid as it is.
	out, err = exec.Command("/usr/bin/tollgate", "doctor").CombinedOutput()
	if !strings.Contains(string(out), "ok    config /etc/tollgate/tollgate.yaml") {
		t.Errorf("doctor on the default config: %v\n%s", err, out)
	}
	if out, err := exec.Command("dpkg", "-r", "tollgate").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, out)
	}
	if _, err := os.Stat("/usr/bin/tollgate"); err == nil {
		t.Error("binary left after removal")
	}
}
