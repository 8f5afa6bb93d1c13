// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"os"
	"strings"
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
}

// pgTargetYAML is the postgres target, as targets list items.
func pgTargetYAML(pg *pgCluster, secret, clientAuth, extra string) string {
	y := fmt.Sprintf("  - name: pg\n    protocol: postgres\n    match: [\"%s\"]\n    client_auth: %s\n"+
		"    upstream:\n      user: %s\n      password_file: %s\n      sslmode: disable\n",
		pg.addr(), clientAuth, pgScramUser, secret)
	return y + extra
}

// newPGSetup starts a cluster, a workload cgroup and a daemon. extra is
// YAML appended after the targets (oidc, identities).
func newPGSetup(t *testing.T, clientAuth, extra string) *pgSetup {
	t.Helper()
	requireRoot(t)
	s := &pgSetup{pg: startPostgres(t), cgroup: newCgroup(t)}
	s.secret = writeSecret(t, pgScramPass)
	cfg := newDaemonConfig(t, fmt.Sprintf("  - name: pg-workload\n    cgroup: %s", s.cgroup),
		pgTargetYAML(s.pg, s.secret, clientAuth, extra))
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
	recs := s.d.records()
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
