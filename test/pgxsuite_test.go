// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// The pgx release whose own test suite TestPgxSuiteDifferential runs: the
// pgx tollgate itself is built with (go.mod), so its test dependencies
// are pinned by its go.sum.
const (
	pgxSuiteModule  = "github.com/jackc/pgx/v5"
	pgxSuiteVersion = "v5.12.0"
)

// pgxSuitePackage is one package of the pgx suite that is run.
type pgxSuitePackage struct {
	dir  string // relative to the module root, as given to go test -c
	name string // short name used in reports and in pgxByDesign keys
	run  string // -test.run pattern; empty runs every test
	skip string // -test.skip pattern; empty skips nothing
}

// pgxSuitePackages are the packages of pgx whose tests talk to a server:
// every package that reads PGX_TEST_* (or connects through pgxtest). The
// others (internal/*, pgconn/ctxwatch, pgconn/internal/bgreader,
// multitracer, the examples) never open a connection, so running them
// through tollgate would measure nothing and only cost time.
//
// pgproto3 is run for TestTrace alone: its other tests are codec unit
// tests without a server, some of which encode a maximum-size (~1 GiB)
// message (pgx's CI comment on its own test step), memory and minutes
// this 2-core machine has no reason to spend twice.
//
// pgconn's TestConnectFailsWithResolveFailureAndFailedConnectionAttempts
// resolves "foo.invalid" through the system resolver: a DNS query to a
// non-loopback name server, which tests here never send. It is skipped in
// both runs.
var pgxSuitePackages = []pgxSuitePackage{
	{dir: ".", name: "pgx"},
	{dir: "./pgconn", name: "pgconn", skip: "^TestConnectFailsWithResolveFailureAndFailedConnectionAttempts$"},
	{dir: "./pgxpool", name: "pgxpool"},
	{dir: "./pgtype", name: "pgtype"},
	{dir: "./pgtype/zeronull", name: "pgtype/zeronull"},
	{dir: "./stdlib", name: "stdlib"},
	{dir: "./tracelog", name: "tracelog"},
	{dir: "./pgproto3", name: "pgproto3", run: "^TestTrace$"},
}

// pgxByDesign are the pgx tests that fail through tollgate by design,
// keyed "package.Test", with the reason. docs/TRANSPARENCY.md lists the
// same tests (the test checks that it does): any other difference between
// the direct run and the run through tollgate is a defect.
var pgxByDesign = map[string]string{
	// The client is identified by the kernel (its process, cgroup, uid),
	// not by the user name and password it sends: tollgate logs in as the
	// target's upstream user with the injected password whatever user the
	// client names, so a connect as a user that does not exist succeeds
	// instead of failing with 28000/28P01.
	"pgconn.TestConnectInvalidUser": "checks that the server refuses a user name; through tollgate the client's " +
		"user name and password are not what authenticates it",
}

// pgxSuiteMinPassed is the least number of tests (subtests included) the
// direct run must pass, so that a broken setup that skips most of the
// suite cannot make the comparison pass vacuously. The direct run of the
// selected packages passes 2,352 (15 skipped) on PostgreSQL 15.
const pgxSuiteMinPassed = 2000

// pgxSuitePassword is the password of every pgx_* role. Only the direct
// run knows it; through tollgate it is the injected upstream credential,
// and the through run's output is checked not to contain it.
const pgxSuitePassword = "pgx-suite-Hn4t"

// TestPgxSuiteDifferential runs pgx's own test suite (pgx v5.12.0, the
// packages in pgxSuitePackages) twice against the same PostgreSQL 15
// cluster: once directly, then unchanged from inside an intercepted
// cgroup, through tollgate with injected credentials and a policy that
// allows every statement class (and not `unknown`: statements with no
// effect and SQL-level EXECUTE must work under a realistic policy). It
// fails when the direct run has any failure (the instrument is broken),
// when too few tests ran, and when any test passing directly does not pass
// through tollgate, except the tests listed in pgxByDesign, which must
// fail through tollgate (the list and docs/TRANSPARENCY.md stay exact).
//
// Setup follows pgx's CI (ci/setup_test.bash, testsetup/): superuser roles
// pgx_md5 (md5), pgx_pw (cleartext password), pgx_scram (SCRAM), the
// "tricky" role for the aclitem test, and per run a database with hstore,
// ltree and the uint64 domain. The runs use separate databases (pgx_direct,
// pgx_through) so leftovers of one cannot change the other. Environment, the
// same in both runs except that only the direct run carries a password:
//
//   - set: PGX_TEST_DATABASE and PGX_TEST_TCP_CONN_STRING (pgx_md5, as in
//     pgx's CI), PGX_TEST_MD5_PASSWORD_CONN_STRING,
//     PGX_TEST_SCRAM_PASSWORD_CONN_STRING (channel_binding=disable),
//     PGX_TEST_PLAIN_PASSWORD_CONN_STRING. Through tollgate the target's
//     upstream user is pgx_md5, the role of the direct run, whatever user
//     the client names.
//   - unset: PGX_TEST_UNIX_SOCKET_CONN_STRING (the intercepted path here is
//     TCP); PGX_TEST_TLS_CONN_STRING and PGX_TEST_SCRAM_PLUS_CONN_STRING
//     (unset in pgx's own CI too; SCRAM channel binding cannot cross a
//     proxy that terminates TLS); PGX_TEST_TLS_CLIENT_CONN_STRING and
//     PGX_SSL_PASSWORD (client-certificate login: like a password, it is
//     an identity check tollgate replaces by the process identity);
//     PGX_TEST_OAUTH (PostgreSQL 18), PGX_TEST_PGBOUNCER_CONN_STRING,
//     PGX_TEST_CRATEDB_CONN_STRING (other servers).
//
// The daemon's state directory is on tmpfs when /dev/shm is there: the
// suite makes hundreds of thousands of audit records, and with their fsyncs
// on this machine's disk the run through tollgate took up to twice as long. What is
// measured here is what the client sees; the ordering the log guarantees
// (a record is durable before its statement is forwarded) is the same code
// path either way, and its cost on a disk is measured by the benchmarks.
//
// The test binaries are built once, outside the workload cgroup, from a
// copy of the module (the module cache is read-only); each run starts
// them with -test.v=test2json and go tool test2json turns their output
// into per-test results, compared by package and test name.
func TestPgxSuiteDifferential(t *testing.T) {
	requireRoot(t)
	requirePostgres(t)
	started := time.Now()
	modDir, bins := buildPgxSuite(t)
	t.Logf("pgx test binaries built in %s", time.Since(started).Round(time.Second))

	pg := startPostgres(t)
	setupPgxCluster(t, pg)
	cgroup := newCgroup(t)
	secret := writeSecret(t, pgxSuitePassword)
	target := fmt.Sprintf("  - name: pg\n    protocol: postgres\n    match: [\"%s\"]\n    client_auth: process\n"+
		"    upstream:\n      user: pgx_md5\n      password_file: %s\n      sslmode: disable\n", pg.addr(), secret)
	// A rule without classes allows every class but unknown.
	target += "rules:\n  - id: allow-every-class\n    action: allow\n"
	dcfg := newDaemonConfig(t, fmt.Sprintf("  - name: pgx-suite\n    cgroup: %s", cgroup), target)
	dcfg.StateDir = pgxSuiteStateDir(t, dcfg.StateDir)
	d := startDaemon(t, dcfg)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	direct := runPgxSuite(t, ctx, modDir, bins, "", pgxSuiteEnv(pg, "pgx_direct", true))
	if n := d.status().Accepted; n != 0 {
		t.Fatalf("the direct run went through tollgate: %d connections accepted", n)
	}
	through := runPgxSuite(t, ctx, modDir, bins, cgroup, pgxSuiteEnv(pg, "pgx_through", false))
	accepted := d.status().Accepted
	t.Logf("pgx %s suite, direct:  %s", pgxSuiteVersion, direct.summary())
	t.Logf("pgx %s suite, through: %s (%d connections through tollgate)", pgxSuiteVersion, through.summary(), accepted)
	if accepted < 100 {
		t.Errorf("only %d connections went through tollgate: the through run was not intercepted", accepted)
	}
	if bytes.Contains(through.raw, []byte(pgxSuitePassword)) {
		t.Errorf("the injected upstream password reached the client's output")
	}

	// The instrument: the direct run must be clean and substantial.
	if fails := direct.failures(); len(fails) > 0 {
		t.Errorf("the direct run failed %d tests: the setup is wrong, the comparison means nothing", len(fails))
		for _, k := range fails {
			t.Logf("direct FAIL %s\n%s", k, direct.outputOf(k))
		}
	}
	t.Logf("skipped by pgx itself in the direct run (the environment it needs is not set): %s",
		strings.Join(direct.withResult("skip"), ", "))
	if p := direct.count("pass"); p < pgxSuiteMinPassed {
		t.Errorf("the direct run passed %d tests, want at least %d", p, pgxSuiteMinPassed)
	}

	// The comparison, test by test.
	var diffs, byDesign []string
	for _, k := range direct.keys() {
		want, got := direct.results[k], through.results[k]
		_, designed := pgxByDesign[k]
		switch {
		case designed && want == "pass" && got == "fail":
			byDesign = append(byDesign, k+" ("+pgxByDesign[k]+")")
		case designed:
			diffs = append(diffs, fmt.Sprintf("%s: listed as failing by design, but direct %s, through tollgate %s "+
				"(update pgxByDesign and docs/TRANSPARENCY.md)", k, want, orNone(got)))
		case want != got:
			diffs = append(diffs, fmt.Sprintf("%s: direct %s, through tollgate %s\n%s", k, want, orNone(got), through.outputOf(k)))
		}
	}
	for _, k := range through.keys() {
		if _, ok := direct.results[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: ran only through tollgate (%s)\n%s", k, through.results[k], through.outputOf(k)))
		}
	}
	for k := range pgxByDesign {
		if _, ok := direct.results[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: listed as failing by design but did not run", k))
		}
	}
	for pkg, out := range through.pkgFailures {
		if _, ok := direct.pkgFailures[pkg]; !ok && through.crashed(pkg) {
			diffs = append(diffs, fmt.Sprintf("package %s: the run through tollgate ended abnormally\n%s", pkg, out))
		}
	}
	sort.Strings(diffs)
	for _, dft := range diffs {
		t.Errorf("%s", dft)
	}
	t.Logf("failing through tollgate by design (docs/TRANSPARENCY.md): %s", strings.Join(byDesign, "; "))
	if len(diffs) > 0 {
		reportDenied(t, d)
	}
	checkTransparencyDoc(t)
	t.Logf("TestPgxSuiteDifferential took %s (direct %s, through %s)", time.Since(started).Round(time.Second),
		direct.took.Round(time.Second), through.took.Round(time.Second))
}

func orNone(s string) string {
	if s == "" {
		return "not run"
	}
	return s
}

// pgxSuiteStateDir returns a state directory on tmpfs (/dev/shm), or def
// when there is none.
func pgxSuiteStateDir(t *testing.T, def string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "tollgate-pgxsuite-")
	if err != nil {
		t.Logf("no tmpfs for the daemon's state (%v): using %s", err, def)
		return def
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "state")
}

// buildPgxSuite copies the pgx module out of the module cache, where it is
// read-only (the binaries run in their package's directory, as go test runs
// them), and builds one test binary per package in pgxSuitePackages. The
// module and its test dependencies come from the module cache, or from the
// Go module proxy on first use as for any build. It returns the copy's
// root and the binaries by package dir.
func buildPgxSuite(t *testing.T) (string, map[string]string) {
	t.Helper()
	env := append(os.Environ(), "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	tmp := t.TempDir()
	dl := exec.Command("go", "mod", "download", "-json", pgxSuiteModule+"@"+pgxSuiteVersion)
	dl.Dir, dl.Env = tmp, env
	out, err := dl.Output()
	if err != nil {
		t.Fatalf("go mod download %s@%s: %v\n%s", pgxSuiteModule, pgxSuiteVersion, err, stderrOf(err))
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %s %s", err, mod.Error, out)
	}
	modDir := filepath.Join(tmp, "pgx")
	if err := copyTree(mod.Dir, modDir); err != nil {
		t.Fatalf("copy %s: %v", mod.Dir, err)
	}
	binDir := filepath.Join(tmp, "bin")
	// -trimpath: the copy's directory is new each run, and without it
	// the paths compiled in make every package miss the build cache (80 s
	// to build instead of 7).
	args := []string{"test", "-trimpath", "-c", "-o", binDir + "/"}
	for _, p := range pgxSuitePackages {
		args = append(args, p.dir)
	}
	build := exec.Command("go", args...)
	build.Dir, build.Env = modDir, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pgx's test binaries (go %s): %v\n%s", strings.Join(args, " "), err, out)
	}
	bins := map[string]string{}
	for _, p := range pgxSuitePackages {
		// go test -c -o DIR/ names each binary after the package's last
		// path element (the module root's package is pgx).
		base := filepath.Base(p.dir)
		if p.dir == "." {
			base = "pgx"
		}
		bins[p.dir] = filepath.Join(binDir, base+".test")
		if _, err := os.Stat(bins[p.dir]); err != nil {
			t.Fatalf("test binary of %s: %v", p.dir, err)
		}
	}
	return modDir, bins
}

// stderrOf returns the stderr an *exec.ExitError carries.
func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// copyTree copies the regular files and directories under src to dst,
// writable by their owner.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("rel %s: %w", p, err)
		}
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("stat: %w", err)
		}
		return os.WriteFile(to, b, info.Mode().Perm()|0o200)
	})
}

// setupPgxCluster does on the throwaway cluster what pgx's
// testsetup/postgresql_setup.sql and pg_hba.conf do: its roles, their
// authentication methods, and one prepared database per run.
func setupPgxCluster(t *testing.T, pg *pgCluster) {
	t.Helper()
	pw := "'" + pgxSuitePassword + "'"
	pg.psqlSuper(t, "postgres",
		"SET password_encryption = 'md5'",
		"CREATE ROLE pgx_md5 SUPERUSER LOGIN PASSWORD "+pw,
		"SET password_encryption = 'scram-sha-256'",
		"CREATE ROLE pgx_pw SUPERUSER LOGIN PASSWORD "+pw,
		"CREATE ROLE pgx_scram SUPERUSER LOGIN PASSWORD "+pw,
		// pgtype's aclitem test needs a role whose name needs quoting.
		`CREATE ROLE " tricky, ' } "" \ test user " SUPERUSER`)
	for _, db := range []string{"pgx_direct", "pgx_through"} {
		pg.psqlSuper(t, "postgres", "CREATE DATABASE "+db)
		pg.psqlSuper(t, db, "CREATE EXTENSION hstore", "CREATE EXTENSION ltree",
			"CREATE DOMAIN uint64 AS numeric(20,0)")
	}
	// pgx_md5 and pgx_pw log in with md5 and cleartext password, as in
	// pgx's pg_hba.conf; the rest of the harness's rules stay.
	hba := "local all all trust\n" +
		"host all pgx_md5 127.0.0.0/8 md5\n" +
		"host all pgx_pw 127.0.0.0/8 password\n" +
		"host all " + pgMD5User + " 127.0.0.0/8 md5\n" +
		"host all all 127.0.0.0/8 scram-sha-256\n" +
		"host all all ::1/128 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(pg.data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	pg.psqlSuper(t, "postgres", "SELECT pg_reload_conf()")
	// The reload is asynchronous. pgx_md5's password is stored as an MD5
	// hash, which SCRAM cannot check: its login succeeds once the new
	// rules are in force.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, errOut, err := runClient(t, ctx, "", []string{"PGPASSWORD=" + pgxSuitePassword}, "", "psql", "-X", "-At",
			"-d", pg.dsn("pgx_md5", "pgx_direct"), "-c", "SELECT 1")
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("pg_hba.conf reload did not take effect: %v %s", err, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgxSuiteEnv is the environment of a run against database db. Only the
// direct run has passwords: through tollgate the client holds none.
func pgxSuiteEnv(pg *pgCluster, db string, direct bool) []string {
	conn := func(user, extra string) string {
		s := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", pg.host, pg.port, user, db)
		if direct {
			s += " password=" + pgxSuitePassword
		}
		return s + extra
	}
	return []string{
		"PGX_TEST_DATABASE=" + conn("pgx_md5", ""),
		"PGX_TEST_TCP_CONN_STRING=" + conn("pgx_md5", ""),
		"PGX_TEST_MD5_PASSWORD_CONN_STRING=" + conn("pgx_md5", ""),
		"PGX_TEST_SCRAM_PASSWORD_CONN_STRING=" + conn("pgx_scram", " channel_binding=disable"),
		"PGX_TEST_PLAIN_PASSWORD_CONN_STRING=" + conn("pgx_pw", ""),
	}
}

// pgxSuiteRun is the outcome of one run of the suite.
type pgxSuiteRun struct {
	results     map[string]string // "package.Test/sub" → pass, fail or skip
	output      map[string]*strings.Builder
	pkgFailures map[string]string // package → output, when the package as a whole failed
	pkgTests    map[string]bool   // package → some test of it reported a result
	raw         []byte            // every package's raw output
	took        time.Duration
}

// runPgxSuite runs every package's test binary, inside cgroup when it is
// not empty, one package after another, and collects per-test results.
// The binaries run in their package's source directory, as go test runs
// them (some read testdata).
func runPgxSuite(t *testing.T, ctx context.Context, modDir string, bins map[string]string, cgroup string, env []string) *pgxSuiteRun {
	t.Helper()
	run := &pgxSuiteRun{results: map[string]string{}, output: map[string]*strings.Builder{},
		pkgFailures: map[string]string{}, pkgTests: map[string]bool{}}
	start := time.Now()
	for _, p := range pgxSuitePackages {
		args := []string{"-test.v=test2json", "-test.count=1", "-test.timeout=10m"}
		if p.run != "" {
			args = append(args, "-test.run", p.run)
		}
		if p.skip != "" {
			args = append(args, "-test.skip", p.skip)
		}
		cmd, cleanup := clientCmd(t, cgroup, env, bins[p.dir], args...)
		cmd.Dir = filepath.Join(modDir, p.dir)
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stdout
		pkgStart := time.Now()
		if err := cmd.Start(); err != nil {
			cleanup()
			t.Fatalf("start %s: %v", p.name, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			cleanup()
			t.Fatalf("pgx package %s: %v", p.name, ctx.Err())
		}
		cleanup()
		t.Logf("pgx %s (cgroup %q): %s, exit %v", p.name, cgroup, time.Since(pkgStart).Round(100*time.Millisecond), err)
		run.raw = append(run.raw, stdout.Bytes()...)
		run.addEvents(t, p.name, stdout.Bytes())
	}
	run.took = time.Since(start)
	return run
}

// testEvent is one event of go tool test2json's output.
type testEvent struct {
	Action string
	Test   string
	Output string
}

// tempDirName matches a t.TempDir path in a subtest's name (pgconn's
// TestParseConfigSSLCertMode names subtests after its service file): the
// random part differs between runs, so it is replaced before comparing.
var tempDirName = regexp.MustCompile(`(/tmp/[A-Za-z_]+)[0-9]+/`)

// addEvents converts a package's -test.v=test2json output with go tool
// test2json (outside any workload cgroup) and records its results.
func (r *pgxSuiteRun) addEvents(t *testing.T, pkg string, raw []byte) {
	t.Helper()
	conv := exec.Command("go", "tool", "test2json", "-p", pkg)
	conv.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off")
	conv.Stdin = bytes.NewReader(raw)
	out, err := conv.Output()
	if err != nil {
		t.Fatalf("go tool test2json: %v\n%s", err, stderrOf(err))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	var pkgOut strings.Builder
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("test2json output %q: %v", sc.Text(), err)
		}
		key := pkg + "." + tempDirName.ReplaceAllString(ev.Test, "${1}N/")
		switch {
		case ev.Test == "" && ev.Action == "output":
			pkgOut.WriteString(ev.Output)
		case ev.Test == "" && ev.Action == "fail":
			r.pkgFailures[pkg] = pkgOut.String()
		case ev.Test == "":
		case ev.Action == "output":
			if r.output[key] == nil {
				r.output[key] = &strings.Builder{}
			}
			r.output[key].WriteString(ev.Output)
		case ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip":
			r.results[key] = ev.Action
			r.pkgTests[pkg] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading test2json output: %v", err)
	}
}

// crashed says whether a package's failure is more than its tests'
// failures: a panic, a timeout, or an exit before any test reported.
func (r *pgxSuiteRun) crashed(pkg string) bool {
	out := r.pkgFailures[pkg]
	return !r.pkgTests[pkg] || strings.Contains(out, "panic:") || strings.Contains(out, "test timed out")
}

// count returns the number of tests with the given result.
func (r *pgxSuiteRun) count(result string) int {
	n := 0
	for _, v := range r.results {
		if v == result {
			n++
		}
	}
	return n
}

func (r *pgxSuiteRun) summary() string {
	s := fmt.Sprintf("%d passed, %d failed, %d skipped", r.count("pass"), r.count("fail"), r.count("skip"))
	if len(r.pkgFailures) > 0 {
		var pkgs []string
		for p := range r.pkgFailures {
			pkgs = append(pkgs, p)
		}
		sort.Strings(pkgs)
		s += "; failed packages: " + strings.Join(pkgs, ", ")
	}
	return s
}

// keys returns the tests that ran, sorted.
func (r *pgxSuiteRun) keys() []string {
	var ks []string
	for k := range r.results {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// withResult returns the tests with the given result, sorted.
func (r *pgxSuiteRun) withResult(result string) []string {
	var ks []string
	for _, k := range r.keys() {
		if r.results[k] == result {
			ks = append(ks, k)
		}
	}
	return ks
}

// failures returns the failed tests and the packages that crashed.
func (r *pgxSuiteRun) failures() []string {
	var fs []string
	for _, k := range r.keys() {
		if r.results[k] == "fail" {
			fs = append(fs, k)
		}
	}
	for p := range r.pkgFailures {
		if r.crashed(p) {
			fs = append(fs, "package "+p)
		}
	}
	return fs
}

// outputOf returns a test's output, shortened: the assertion messages pgx
// prints are what matters.
func (r *pgxSuiteRun) outputOf(key string) string {
	if strings.HasPrefix(key, "package ") {
		return truncateLog(r.pkgFailures[strings.TrimPrefix(key, "package ")])
	}
	b := r.output[key]
	if b == nil {
		return ""
	}
	s := b.String()
	if len(s) > 3000 {
		s = s[:1500] + "\n[...]\n" + s[len(s)-1500:]
	}
	return s
}

// reportDenied logs the distinct statements the daemon denied during the
// through run: with a policy that allows every class, a denial is an
// `unknown` (or unclassified) statement, i.e. text tollgate's parser did
// not place. The log holds hundreds of thousands of records, so they are
// streamed from `tollgate audit tail -o json` and only denials decoded.
func reportDenied(t *testing.T, d *daemon) {
	t.Helper()
	cmd := exec.Command(tollgateBin, "audit", "tail", "--config", d.cfgPath, "-n", "100000000", "-o", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var order []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"action":"deny"`)) {
			continue
		}
		var r struct {
			Kind      audit.Kind
			Statement *struct {
				Text    string
				Classes []string
			}
			Decision *struct{ Action string }
			Detail   map[string]string
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("audit tail line %q: %v", line, err)
		}
		if r.Kind != audit.KindStatement || r.Decision == nil || r.Decision.Action != "deny" || r.Statement == nil {
			continue
		}
		k := fmt.Sprintf("%q classes=%v protocol=%s", r.Statement.Text, r.Statement.Classes, r.Detail["protocol"])
		if seen[k] == 0 {
			order = append(order, k)
		}
		seen[k]++
	}
	if err := cmd.Wait(); err != nil || sc.Err() != nil {
		t.Fatalf("audit tail: %v %v %s", err, sc.Err(), stderr.String())
	}
	if len(order) == 0 {
		t.Log("tollgate denied no statement during the through run")
		return
	}
	var b strings.Builder
	for i, k := range order {
		if i == 100 {
			fmt.Fprintf(&b, "[... %d more]\n", len(order)-i)
			break
		}
		fmt.Fprintf(&b, "%6d× %s\n", seen[k], k)
	}
	t.Logf("statements tollgate denied during the through run (%d distinct):\n%s", len(order), b.String())
}

// byDesignDocRow matches a row of the by-design table in
// docs/TRANSPARENCY.md: "| `pgconn.TestConnectInvalidUser` | reason |".
var byDesignDocRow = regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_/]+\\.Test[A-Za-z0-9_/]*)` \\|")

// checkTransparencyDoc fails the test when docs/TRANSPARENCY.md and
// pgxByDesign do not list the same tests.
func checkTransparencyDoc(t *testing.T) {
	t.Helper()
	doc, err := os.ReadFile("../docs/TRANSPARENCY.md")
	if err != nil {
		t.Errorf("the by-design list must be documented: %v", err)
		return
	}
	var inDoc []string
	for _, m := range byDesignDocRow.FindAllSubmatch(doc, -1) {
		inDoc = append(inDoc, string(m[1]))
	}
	var inTest []string
	for k := range pgxByDesign {
		inTest = append(inTest, k)
	}
	sort.Strings(inDoc)
	sort.Strings(inTest)
	if !slices.Equal(inDoc, inTest) {
		t.Errorf("docs/TRANSPARENCY.md lists %v as failing by design, pgxByDesign %v", inDoc, inTest)
	}
}
