// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

var (
	pgclientOnce sync.Once
	pgclientPath string
	pgclientErr  error
)

// pgclientBin builds testdata/pgclient, the pgx client, once per run, next
// to the daemon binary (TestMain removes that directory).
func pgclientBin(t testing.TB) string {
	t.Helper()
	pgclientOnce.Do(func() {
		pgclientPath = filepath.Join(filepath.Dir(tollgateBin), "pgclient")
		out, err := exec.Command("go", "build", "-o", pgclientPath, "./testdata/pgclient").CombinedOutput()
		if err != nil {
			pgclientErr = fmt.Errorf("build pgclient: %v\n%s", err, out)
		}
	})
	if pgclientErr != nil {
		t.Fatal(pgclientErr)
	}
	return pgclientPath
}

// python3 is the system interpreter, which has the python3-psycopg
// package (a pyenv shim on PATH may not).
const python3 = "/usr/bin/python3"

// createDB creates a database owned by the SCRAM role.
func (s *pgSetup) createDB(t testing.TB, name string) {
	t.Helper()
	s.pg.psqlSuper(t, "postgres", "CREATE DATABASE "+name+" OWNER "+pgScramUser)
}

// runBoth runs the same client directly against database d_<name> and
// through tollgate against p_<name>, and fails the test if stdout, stderr
// or the exit status differ. clean removes what legitimately differs
// (timings). It returns the proxied run's stdout.
func (s *pgSetup) runBoth(t *testing.T, name string, clean func(string) string, run func(through bool, db string) (string, string, error)) string {
	t.Helper()
	s.createDB(t, "d_"+name)
	s.createDB(t, "p_"+name)
	dOut, dErr, dRunErr := run(false, "d_"+name)
	pOut, pErr, pRunErr := run(true, "p_"+name)
	if clean == nil {
		clean = func(s string) string { return s }
	}
	dOut, pOut, dErr, pErr = clean(dOut), clean(pOut), clean(dErr), clean(pErr)
	if (dRunErr == nil) != (pRunErr == nil) {
		t.Errorf("%s: exit status differs: direct %v, through tollgate %v", name, dRunErr, pRunErr)
	}
	if dOut != pOut {
		t.Errorf("%s: stdout differs\n%s", name, lineDiff(dOut, pOut))
	}
	if dErr != pErr {
		t.Errorf("%s: stderr differs\n%s", name, lineDiff(dErr, pErr))
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("%s through tollgate: exit %v\nstdout:\n%s\nstderr:\n%s", name, pRunErr, truncateLog(pOut), truncateLog(pErr))
	}
	return pOut
}

func truncateLog(s string) string {
	if len(s) > 6000 {
		return s[:3000] + "\n[...]\n" + s[len(s)-3000:]
	}
	return s
}

// lineDiff shows the first differing lines of two outputs.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < max(len(al), len(bl)) && len(out) < 20; i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("line %d:\n  direct:  %q\n  tollgate: %q", i+1, x, y))
		}
	}
	return strings.Join(out, "\n")
}

// clientEnv returns the environment of a client run: the password only
// for direct runs. Through tollgate the client holds no credential.
func clientEnv(through bool) (string, []string) {
	if through {
		return "", nil
	}
	return "", []string{"PGPASSWORD=" + pgScramPass}
}

// TestPostgresDifferential runs unmodified clients (psql, pgx, psycopg)
// directly and through tollgate and compares their output byte for byte.
// Through tollgate they hold no password: the process identity is enough
// and tollgate logs in with the injected credentials.
func TestPostgresDifferential(t *testing.T) {
	s := newPGSetup(t, "process", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cg := func(through bool) string {
		if through {
			return s.cgroup
		}
		return ""
	}

	t.Run("psql", func(t *testing.T) {
		script, err := filepath.Abs("testdata/pg/script.sql")
		if err != nil {
			t.Fatal(err)
		}
		out := s.runBoth(t, "psql", nil, func(through bool, db string) (string, string, error) {
			_, env := clientEnv(through)
			return runClient(t, ctx, cg(through), env, "", "psql", "-X", "-d", s.pg.dsn(pgScramUser, db), "-f", script)
		})
		if !strings.Contains(out, "done") || !strings.Contains(out, "COPY 2") {
			t.Fatalf("psql script did not run through: %s", truncateLog(out))
		}
		// \lo_export reads the large object with fast-path function
		// calls, which are recorded like statements.
		calls := 0
		for _, r := range statements(s.d.records()) {
			if r.Detail["protocol"] == "function" && r.Detail["function_oid"] != "" && r.Statement.Classes[0] == "function_call" {
				calls++
			}
		}
		if calls < 3 {
			t.Errorf("%d function call records, want lo_open, loread and lo_close at least", calls)
		}
	})

	t.Run("pgx", func(t *testing.T) {
		bin := pgclientBin(t)
		out := s.runBoth(t, "pgx", nil, func(through bool, db string) (string, string, error) {
			_, env := clientEnv(through)
			return runClient(t, ctx, cg(through), env, "", bin, "suite", s.pg.dsn(pgScramUser, db))
		})
		for _, want := range []string{"notification 3: tollgate_test via notify", "copy from: 5000 ok", "pipeline 4: sync"} {
			if !strings.Contains(out, want) {
				t.Errorf("pgx suite output lacks %q", want)
			}
		}
	})

	t.Run("pgx-large", func(t *testing.T) {
		// A 65 MiB value: larger than any buffer, streamed both ways.
		bin := pgclientBin(t)
		out := s.runBoth(t, "pgxlarge", nil, func(through bool, db string) (string, string, error) {
			_, env := clientEnv(through)
			return runClient(t, ctx, cg(through), env, "", bin, "large", s.pg.dsn(pgScramUser, db), "65")
		})
		if !strings.Contains(out, "equal true") {
			t.Fatalf("large value not carried: %s", out)
		}
	})

	t.Run("psycopg", func(t *testing.T) {
		if _, err := os.Stat(python3); err != nil {
			t.Skip("no system python3")
		}
		script, _ := filepath.Abs("testdata/pg/client.py")
		out := s.runBoth(t, "psycopg", nil, func(through bool, db string) (string, string, error) {
			_, env := clientEnv(through)
			return runClient(t, ctx, cg(through), env, "", python3, script, s.pg.dsn(pgScramUser, db))
		})
		if !strings.HasSuffix(out, "done\n") {
			t.Fatalf("psycopg script did not finish: %s", out)
		}
	})

	t.Run("pgbench", func(t *testing.T) {
		// Timings differ between runs; everything else must not.
		timing := regexp.MustCompile(`(?m)(\(elapsed [^)]*\)|done in .*$|^(latency|initial connection time|tps|number of clients|number of threads).*$)`)
		clean := func(s string) string { return timing.ReplaceAllString(s, "") }
		s.runBoth(t, "bench", clean, func(through bool, db string) (string, string, error) {
			_, env := clientEnv(through)
			dsn := s.pg.dsn(pgScramUser, db)
			o1, e1, err := runClient(t, ctx, cg(through), env, "", "pgbench", "-i", "-s", "2", dsn)
			if err != nil {
				return o1, e1, err
			}
			out, errOut := o1, e1
			for _, mode := range []string{"simple", "extended", "prepared"} {
				for _, sel := range [][]string{nil, {"-S"}} {
					args := append([]string{"-n", "-M", mode, "-c", "4", "-j", "2", "-t", "200"}, sel...)
					o, e, err := runClient(t, ctx, cg(through), env, "", "pgbench", append(args, dsn)...)
					out += o
					errOut += e
					if err != nil {
						return out, errOut, err
					}
				}
			}
			sum := s.pg.psqlSuper(t, db, "SELECT count(*) FROM pgbench_accounts")
			return out + "accounts: " + sum, errOut, nil
		})
		// Every pgbench transaction's UPDATE of pgbench_accounts has a
		// statement record: 3 modes x 4 clients x 200 transactions.
		n := 0
		for _, r := range executions(s.d.records()) {
			if r.Statement != nil && strings.HasPrefix(r.Statement.Text, "UPDATE pgbench_accounts") {
				n++
			}
		}
		if n != 3*4*200 {
			t.Errorf("%d statement records for UPDATE pgbench_accounts, want %d", n, 3*4*200)
		}
	})

	// Every session that ran has its start and end, and every statement
	// record belongs to a started session.
	recs := s.d.settledRecords()
	starts, ends := sessionRecords(recs)
	for id := range starts {
		if ends[id] == nil {
			t.Errorf("session %s has no session.end", id)
		}
	}
	results := 0
	for _, r := range recs {
		switch r.Kind {
		case audit.KindStatement:
			if starts[r.Session] == nil {
				t.Fatalf("statement of an unknown session: %+v", r)
			}
		case audit.KindResult:
			results++
		}
	}
	// Every execution has its result; Parse records have none.
	if st := len(executions(recs)); results != st {
		t.Errorf("%d execution records, %d result records", st, results)
	}
	if len(statements(recs)) == len(executions(recs)) {
		t.Error("no Parse was recorded")
	}
	// A session's executions are in the log in the order the session ran
	// them, pipelines included: detail "n" grows with seq.
	lastN := map[string]int{}
	for _, r := range executions(recs) {
		n, err := strconv.Atoi(r.Detail["n"])
		if err != nil {
			t.Fatalf("statement record %d without n: %v", r.Seq, r.Detail)
		}
		if n <= lastN[r.Session] {
			t.Errorf("session %s: statement n=%d (seq %d) after n=%d", r.Session, n, r.Seq, lastN[r.Session])
		}
		lastN[r.Session] = n
	}
}
