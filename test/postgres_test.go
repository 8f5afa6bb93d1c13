// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// pgSetup is a throwaway PostgreSQL cluster protected by a daemon whose
// postgres target logs in as the SCRAM role with injected credentials.
type pgSetup struct {
	pg     *pgCluster
	d      *daemon
	cgroup string
	secret string // the upstream password file
	// metrics is the daemon's metrics.listen address.
	metrics string
}

// pgTargetYAML is the postgres target, as targets list items.
func pgTargetYAML(pg *pgCluster, secret, clientAuth, extra string) string {
	return pgTargetTLSYAML(pg, secret, clientAuth, "sslmode: disable", extra)
}

// pgAllowAll allows every statement, unknown ones too: the tests of the
// proxy itself run under it, since nothing is allowed by default.
const pgAllowAll = "rules:\n" +
	"  - id: allow-all\n    action: allow\n" +
	"  - id: allow-unknown\n    when: {classes: [unknown]}\n    action: allow\n"

// pgTargetTLSYAML is pgTargetYAML with the upstream's TLS lines. Unless
// extra has rules of its own (or a policy file), pgAllowAll is added.
func pgTargetTLSYAML(pg *pgCluster, secret, clientAuth, tlsLines, extra string) string {
	if !strings.Contains(extra, "rules:") && !strings.Contains(extra, "policy_file:") {
		if extra != "" && !strings.HasSuffix(extra, "\n") {
			extra += "\n"
		}
		extra += pgAllowAll
	}
	y := fmt.Sprintf("  - name: pg\n    protocol: postgres\n    match: [\"%s\"]\n    client_auth: %s\n"+
		"    upstream:\n      user: %s\n      password_file: %s\n",
		pg.addr(), clientAuth, pgScramUser, secret)
	for _, l := range strings.Split(tlsLines, "\n") {
		y += "      " + l + "\n"
	}
	return y + extra
}

// newPGSetup starts a cluster, a workload cgroup and a daemon. extra is
// YAML appended after the targets (oidc, identities).
func newPGSetup(t testing.TB, clientAuth, extra string) *pgSetup {
	t.Helper()
	return newPGSetupAudit(t, clientAuth, extra, "")
}

// newPGSetupAudit is newPGSetup with the config's audit keys (indented by
// two spaces), such as "  sync: batch".
func newPGSetupAudit(t testing.TB, clientAuth, extra, audit string) *pgSetup {
	t.Helper()
	requireRoot(t)
	s := &pgSetup{pg: startPostgres(t), cgroup: newCgroup(t)}
	s.secret = writeSecret(t, pgScramPass)
	cfg := newDaemonConfig(t, fmt.Sprintf("  - name: pg-workload\n    cgroup: %s", s.cgroup),
		pgTargetYAML(s.pg, s.secret, clientAuth, extra))
	cfg.Metrics = freeLoopbackAddr(t)
	cfg.Audit = audit
	s.metrics = cfg.Metrics
	s.d = startDaemon(t, cfg)
	return s
}

// psql runs psql; through the daemon (cgroup set) no password is given,
// direct it logs in with the role's password.
func (s *pgSetup) psql(t *testing.T, ctx context.Context, through bool, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cg, env := "", []string{"PGPASSWORD=" + pgScramPass}
	if through {
		cg, env = s.cgroup, nil
	}
	full := append([]string{"-X", "-v", "ON_ERROR_STOP=0", "-d", s.pg.dsn(pgScramUser, pgDatabase)}, args...)
	return runClient(t, ctx, cg, env, stdin, "psql", full...)
}

// statements returns the statement records of the daemon's log.
func statements(recs []*audit.Record) []*audit.Record {
	var out []*audit.Record
	for _, r := range recs {
		if r.Kind == audit.KindStatement {
			out = append(out, r)
		}
	}
	return out
}

// executions returns the statement records of executions (Query, Execute,
// function call), without those of Parse messages.
func executions(recs []*audit.Record) []*audit.Record {
	var out []*audit.Record
	for _, r := range statements(recs) {
		if r.Detail["protocol"] != "parse" {
			out = append(out, r)
		}
	}
	return out
}

// TestPostgresSmoke: an unmodified psql in the workload, holding no
// password, reads and writes through the proxy; the session and each
// statement are recorded, with literals normalised away.
func TestPostgresSmoke(t *testing.T) {
	s := newPGSetup(t, "process", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := s.psql(t, ctx, true, "", "-At", "-c", "CREATE TABLE smoke (id int, secret text)",
		"-c", "INSERT INTO smoke VALUES (1, 'literal-hunter2')", "-c", "SELECT id, secret, current_user FROM smoke")
	if err != nil {
		t.Fatalf("psql: %v\n%s\n%s", err, out, errOut)
	}
	if want := "CREATE TABLE\nINSERT 0 1\n1|literal-hunter2|" + pgScramUser + "\n"; out != want {
		t.Fatalf("psql output %q, want %q (stderr %s)", out, want, errOut)
	}
	recs := s.d.settledRecords()
	if testing.Verbose() {
		out, _ := runTollgate("audit", "tail", "--config", s.d.cfgPath, "-n", "100", "-o", "json")
		t.Log(out)
	}
	stmts := statements(recs)
	var texts []string
	for _, r := range stmts {
		texts = append(texts, r.Statement.Text)
	}
	want := []string{"CREATE TABLE smoke (id int, secret text)", "INSERT INTO smoke VALUES ($1, $2)", "SELECT id, secret, current_user FROM smoke"}
	if strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Fatalf("statement texts:\n%s\nwant:\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
	raw, err := os.ReadFile(s.d.cfg.StateDir + "/audit.db")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"literal-hunter2", pgScramPass} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("%q found in the audit log file", secret)
		}
	}
	if strings.Contains(s.d.stderr.String(), pgScramPass) {
		t.Errorf("upstream password in the daemon's output")
	}
	starts, ends := sessionRecords(recs)
	if len(starts) != 1 || len(ends) != 1 {
		t.Fatalf("%d session starts, %d ends", len(starts), len(ends))
	}
	for _, st := range starts {
		if st.Identity == nil || st.Identity.Method != "process" || st.Detail["database"] != pgDatabase || st.Detail["user"] != pgScramUser {
			t.Errorf("session.start %+v identity %+v", st.Detail, st.Identity)
		}
	}
}

// TestPostgresCancel: pgx cancels a running query with a CancelRequest on
// a new connection (context deadline, then pgconn.CancelRequest); tollgate
// maps the key it gave the client to the real one, and the query really
// stops on the server. The cancel connection is recorded.
func TestPostgresCancel(t *testing.T) {
	s := newPGSetup(t, "process", "")
	bin := pgclientBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := s.runBoth(t, "cancel", nil, func(through bool, db string) (string, string, error) {
		cg, env := clientEnv(through)
		if through {
			cg = s.cgroup
		}
		return runClient(t, ctx, cg, env, "", bin, "cancel", s.pg.dsn(pgScramUser, db))
	})
	for _, want := range []string{"cancelled: ERROR 57014: canceling statement due to user request within 10s true",
		"sleeping on the server: 0", "cancel request: ok", "explicit cancel: ERROR 57014"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	starts, _ := sessionRecords(s.d.records())
	cancels := 0
	for _, r := range starts {
		if r.Detail["request"] == "cancel" {
			cancels++
			if starts[r.Detail["cancels"]] == nil {
				t.Errorf("cancel names no recorded session: %+v", r.Detail)
			}
		}
	}
	if cancels != 2 {
		t.Errorf("%d cancel requests recorded, want 2", cancels)
	}
}

// TestPostgresMalformed: truncated, oversized, negative-length and
// otherwise malformed messages end the session with FATAL 08P01, and the
// daemon keeps serving.
func TestPostgresMalformed(t *testing.T) {
	s := newPGSetup(t, "process", "")
	bin := pgclientBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, kind := range []string{"negative", "oversized", "truncated", "badtype", "malformed-bind", "unterminated-query",
		"startup-oversized", "startup-garbage"} {
		out, errOut, err := runClient(t, ctx, s.cgroup, nil, "", bin, "bad", s.pg.addr(), pgScramUser, pgDatabase, kind)
		if err != nil {
			t.Fatalf("%s: %v\n%s", kind, err, errOut)
		}
		if want := kind + ": FATAL 08P01"; !strings.HasPrefix(out, want) || !strings.HasSuffix(out, "then closed true\n") {
			t.Errorf("%s: got %q, want %q and a close", kind, out, want)
		}
	}
	// Still serving.
	out, errOut, err := s.psql(t, ctx, true, "", "-At", "-c", "SELECT 'still up'")
	if err != nil || out != "still up\n" {
		t.Fatalf("after malformed input: %q %v %s", out, err, errOut)
	}
	if st := s.d.status(); len(st.Targets) != 1 {
		t.Fatalf("status: %+v", st)
	}
}

// TestPostgresSecretNotExposed: a client with no privileges (uid nobody)
// works through tollgate without any password, cannot read the password
// file, and nothing the server side sends it contains the password.
func TestPostgresSecretNotExposed(t *testing.T) {
	s := newPGSetup(t, "process", "")
	bin := pgclientBin(t)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}

	// The test binaries live in a root-only directory: give nobody a copy.
	dir, err := os.MkdirTemp("", "tollgate-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	bin = dir + "/pgclient"
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd, cleanup := clientCmd(t, s.cgroup, nil, bin, "raw", s.pg.addr(), pgScramUser, pgDatabase)
	defer cleanup()
	cmd.SysProcAttr.Credential = nobody
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("raw client as nobody: %v", err)
	}
	if !strings.Contains(string(out), "pgclient-raw") || !strings.Contains(string(out), "division by zero") {
		t.Fatalf("raw session did not run: %.2000s", out)
	}
	if strings.Contains(string(out), pgScramPass) {
		t.Fatal("the upstream password reached the client")
	}
	cat, cleanup2 := clientCmd(t, s.cgroup, nil, "cat", s.secret)
	defer cleanup2()
	cat.SysProcAttr.Credential = nobody
	if b, err := cat.CombinedOutput(); err == nil || !strings.Contains(string(b), "Permission denied") {
		t.Fatalf("nobody can read the password file: %v %s", err, b)
	}
}

// TestPostgresUpstreamTLS: with sslmode verify-full tollgate's upstream
// login is encrypted and checks the server's certificate; with a CA that
// did not sign it the login fails, without falling back to plaintext.
func TestPostgresUpstreamTLS(t *testing.T) {
	requireRoot(t)
	pg := startPostgres(t)
	caPath := pg.enableTLS(t)
	otherCA, _, _ := testCertificates(t, pg.host)
	otherPath := filepath.Join(t.TempDir(), "other-ca.pem")
	os.WriteFile(otherPath, otherCA, 0o644)
	cgroup := newCgroup(t)
	secret := writeSecret(t, pgScramPass)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name, tls, want string
	}{
		{"verify-full", "sslmode: verify-full\nsslrootcert: " + caPath, "t|TLSv1.3\n"},
		{"verify-ca", "sslmode: verify-ca\nsslrootcert: " + caPath, "t|TLSv1.3\n"},
		{"require", "sslmode: require", "t|TLSv1.3\n"},
		{"wrong-ca", "sslmode: verify-full\nsslrootcert: " + otherPath, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newDaemonConfig(t, fmt.Sprintf("  - name: pg-workload\n    cgroup: %s", cgroup),
				pgTargetTLSYAML(pg, secret, "process", tc.tls, ""))
			d := startDaemon(t, cfg)
			defer d.stop()
			out, errOut, err := runClient(t, ctx, cgroup, nil, "", "psql", "-X", "-At", "-d", pg.dsn(pgScramUser, pgDatabase),
				"-c", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
			if tc.want == "" {
				if err == nil || !strings.Contains(errOut, "tollgate could not connect to the server") {
					t.Fatalf("login with the wrong CA: %v %q %q", err, out, errOut)
				}
				waitFor(t, "the daemon to log why", func() bool {
					return strings.Contains(d.stderr.String(), "certificate signed by unknown authority")
				})
				return
			}
			if err != nil || out != tc.want {
				t.Fatalf("got %q %v %s, want %q", out, err, errOut, tc.want)
			}
		})
	}
}
