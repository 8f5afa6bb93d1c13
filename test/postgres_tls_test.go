// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// TestPostgresClientTLS: a target with tls offers the daemon's certificate
// to clients that ask for TLS. An unmodified psql with sslmode=verify-full
// (its CA trusts the certificate issued for the address it dials) works
// through interception, the session record says TLS; a plaintext client of
// the same target keeps working.
func TestPostgresClientTLS(t *testing.T) {
	requireRoot(t)
	pg := startPostgres(t)
	cgroup := newCgroup(t)
	secret := writeSecret(t, pgScramPass)
	caPEM, certPEM, keyPEM := testCertificates(t, pg.host)
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "tollgate.pem"), filepath.Join(dir, "tollgate.key")
	for f, b := range map[string][]byte{caFile: caPEM, certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsYAML := "    tls:\n      cert_file: " + certFile + "\n      key_file: " + keyFile + "\n"
	cfg := newDaemonConfig(t, "  - name: pg-workload\n    cgroup: "+cgroup,
		pgTargetYAML(pg, secret, "process", tlsYAML))
	d := startDaemon(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(sslmode string) string {
		t.Helper()
		dsn := pg.dsn(pgScramUser, pgDatabase) + " sslmode=" + sslmode + " sslrootcert=" + caFile
		out, errOut, err := runClient(t, ctx, cgroup, nil, "", "psql", "-X", "-At", "-d", dsn,
			"-c", `\conninfo`, "-c", "SELECT 'through-' || current_user")
		if err != nil {
			t.Fatalf("psql sslmode=%s: %v\n%s%s", sslmode, err, out, errOut)
		}
		if !strings.Contains(out, "through-"+pgScramUser) {
			t.Fatalf("psql sslmode=%s: unexpected output %q", sslmode, out)
		}
		return out
	}
	if out := run("verify-full"); !strings.Contains(out, "SSL connection (protocol: TLSv1.3") {
		t.Errorf("verify-full: psql reports no TLS: %q", out)
	}
	if out := run("disable"); strings.Contains(out, "SSL connection") {
		t.Errorf("sslmode=disable: psql reports TLS: %q", out)
	}

	var tlsSessions, plainSessions int
	for _, r := range d.records() {
		if r.Kind != audit.KindSessionStart || r.Target != "pg" {
			continue
		}
		switch v := r.Detail["tls"]; {
		case strings.HasPrefix(v, "TLS"):
			tlsSessions++
		case v == "" || v == "none":
			plainSessions++
		default:
			t.Errorf("session.start tls detail %q", v)
		}
	}
	if tlsSessions != 1 || plainSessions != 1 {
		t.Errorf("session.start records: %d over TLS, %d plaintext; want 1 and 1", tlsSessions, plainSessions)
	}
}
