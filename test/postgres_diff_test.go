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
// (timings). It returns the proxied run's stdout. With TOLLGATE_DIFF_DIR
// set, both runs' outputs are written there, named after the test.
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
	if dir := os.Getenv("TOLLGATE_DIFF_DIR"); dir != "" {
		// Both runs' outputs, whole, for a diff tool.
		base := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		for suffix, s := range map[string]string{".direct.stdout": dOut, ".direct.stderr": dErr,
			".through.stdout": pOut, ".through.stderr": pErr} {
			if err := os.WriteFile(base+suffix, []byte(s), 0o644); err != nil {
				t.Error(err)
			}
		}
	}
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

// lineDiff shows where two outputs differ: the lines only the direct run
// printed ("-") and only the tollgate run printed ("+"), numbered, around
// their longest common subsequence of lines, so that one missing or extra
// line does not make every later line differ. At most 60 lines are shown.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(al)*len(bl) > 16<<20 {
		return positionalDiff(al, bl)
	}
	// lcs[i][j] is the length of the longest common subsequence of
	// al[i:] and bl[j:].
	lcs := make([][]int32, len(al)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(bl)+1)
	}
	for i := len(al) - 1; i >= 0; i-- {
		for j := len(bl) - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for (i < len(al) || j < len(bl)) && len(out) < 60 {
		switch {
		case i < len(al) && j < len(bl) && al[i] == bl[j]:
			i, j = i+1, j+1
		case i < len(al) && (j == len(bl) || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, fmt.Sprintf("- direct   %d: %q", i+1, al[i]))
			i++
		default:
			out = append(out, fmt.Sprintf("+ tollgate %d: %q", j+1, bl[j]))
			j++
		}
	}
	return strings.Join(out, "\n")
}

// positionalDiff shows the first lines that differ at the same position,
// for outputs too long for lineDiff.
func positionalDiff(al, bl []string) string {
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
	cg := s.clientCgroup

	t.Run("psql", func(t *testing.T) {
		out := s.diffPsql(t, ctx, "psql", "script.sql")
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
		out := s.diffPython(t, ctx, "psycopg", "client.py")
		if !strings.HasSuffix(out, "done\n") {
			t.Fatalf("psycopg script did not finish: %s", out)
		}
	})

	// The second client family of issue 12: psql's and psycopg's own
	// features and the server's error paths.
	s.diffFeatures(t, ctx)

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

// diffPsql runs psql on testdata/pg/<script> directly and through
// tollgate (runBoth), with env added to the client's environment, and
// returns the proxied run's stdout.
func (s *pgSetup) diffPsql(t *testing.T, ctx context.Context, name, script string, env ...string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata/pg", script))
	if err != nil {
		t.Fatal(err)
	}
	return s.runBoth(t, name, nil, func(through bool, db string) (string, string, error) {
		_, penv := clientEnv(through)
		return runClient(t, ctx, s.clientCgroup(through), append(penv, env...), "", "psql", "-X", "-d", s.pg.dsn(pgScramUser, db), "-f", path)
	})
}

// diffPython runs the psycopg script testdata/pg/<script> with the system
// python3 directly and through tollgate (runBoth) and returns the proxied
// run's stdout.
func (s *pgSetup) diffPython(t *testing.T, ctx context.Context, name, script string) string {
	t.Helper()
	if _, err := os.Stat(python3); err != nil {
		t.Skip("no system python3")
	}
	path, err := filepath.Abs(filepath.Join("testdata/pg", script))
	if err != nil {
		t.Fatal(err)
	}
	return s.runBoth(t, name, nil, func(through bool, db string) (string, string, error) {
		_, env := clientEnv(through)
		return runClient(t, ctx, s.clientCgroup(through), env, "", python3, path, s.pg.dsn(pgScramUser, db))
	})
}

// clientCgroup is the cgroup a client runs in: the workload's through
// tollgate, none directly.
func (s *pgSetup) clientCgroup(through bool) string {
	if through {
		return s.cgroup
	}
	return ""
}

// diffFeatures runs the second client family of issue 12 as subtests:
// features.sql (\gset, \gdesc, \copy, SQL PREPARE/EXECUTE/DEALLOCATE/
// DISCARD, notices, RAISE, errors mid-transaction, savepoints, syntax
// errors, empty statements, escape strings, COPY FROM STDIN with bad
// rows), scs.sql (standard_conforming_strings off), the same set at login,
// and features.py (psycopg: server-side cursors, pipeline mode, COPY,
// LISTEN/NOTIFY, binary parameters, the same error paths). Each is diffed
// against the direct run, under whatever policy s's daemon has.
func (s *pgSetup) diffFeatures(t *testing.T, ctx context.Context) {
	t.Run("psql-features", func(t *testing.T) {
		out := s.diffPsql(t, ctx, "psqlfeatures", "features.sql")
		if !strings.HasSuffix(out, "\\echo done\ndone\n") {
			t.Errorf("features.sql did not run to its end: %s", truncateLog(out))
		}
	})
	t.Run("psql-scs", func(t *testing.T) {
		s.diffPsql(t, ctx, "psqlscs", "scs.sql")
	})
	t.Run("psql-scs-startup", func(t *testing.T) {
		// standard_conforming_strings off from the start, as the
		// startup packet's options (libpq's PGOPTIONS) set it.
		s.diffPsql(t, ctx, "psqlscsstartup", "scs.sql", "PGOPTIONS=-c standard_conforming_strings=off")
	})
	t.Run("psycopg-features", func(t *testing.T) {
		out := s.diffPython(t, ctx, "pyfeatures", "features.py")
		if !strings.HasSuffix(out, "done\n") {
			t.Errorf("features.py did not finish: %s", truncateLog(out))
		}
	})
}

// TestPostgresDifferentialRealisticPolicy runs the differential scripts
// under a policy a deployment would have: every class allowed, but not
// unknown (no allow-unknown rule, unlike pgAllowAll). Statements that do
// not parse, empty and comment-only statements and SQL-level EXECUTE must
// still behave exactly as direct: the server's syntax error, its
// EmptyQueryResponse, the prepared statement's result.
func TestPostgresDifferentialRealisticPolicy(t *testing.T) {
	s := newPGSetup(t, "process", "rules:\n  - id: allow-all\n    action: allow\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Run("psql", func(t *testing.T) {
		s.diffPsql(t, ctx, "psql", "script.sql")
	})
	t.Run("psycopg", func(t *testing.T) {
		s.diffPython(t, ctx, "psycopg", "client.py")
	})
	s.diffFeatures(t, ctx)
}
