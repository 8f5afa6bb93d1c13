// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
)

// socket is the path of the cluster's unix socket.
func (c *pgCluster) socket() string {
	return filepath.Join(c.sockDir, ".s.PGSQL."+strconv.Itoa(c.port))
}

// newPGUnixSetup is newPGSetup with the cluster's unix socket protected
// too: the target's matches are its TCP address and unix:<socket>. The
// daemon's run directory is opened to other users, as /run/tollgate is,
// so that unprivileged workloads can reach the target sockets.
func newPGUnixSetup(t testing.TB, extra string) *pgSetup {
	t.Helper()
	requireRoot(t)
	s := &pgSetup{pg: startPostgres(t), cgroup: newCgroup(t)}
	s.secret = writeSecret(t, pgScramPass)
	y := pgTargetYAML(s.pg, s.secret, "process", extra)
	tcpMatch := `match: ["` + s.pg.addr() + `"]`
	if !strings.Contains(y, tcpMatch) {
		t.Fatalf("target YAML without %s:\n%s", tcpMatch, y)
	}
	y = strings.Replace(y, tcpMatch, `match: ["`+s.pg.addr()+`", "unix:`+s.pg.socket()+`"]`, 1)
	cfg := newDaemonConfig(t, fmt.Sprintf("  - name: pg-workload\n    cgroup: %s", s.cgroup), y)
	for _, d := range []string{filepath.Dir(cfg.Socket), filepath.Dir(filepath.Dir(cfg.Socket))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.d = startDaemon(t, cfg)
	return s
}

// pgUnixPolicy allows everything but statements on the table secrets.
const pgUnixPolicy = `rules:
  - id: no-secrets
    when: {tables: [secrets]}
    action: deny
    reason: secrets are off limits
  - id: allow-all
    action: allow
  - id: allow-unknown
    when: {classes: [unknown]}
    action: allow
`

// TestPostgresUnixSocket: an unmodified psql in the workload connects with
// -h <the server's socket directory>, as with a local server's
// /var/run/postgresql, and reaches the server through tollgate: the
// session and its statements are recorded with the path it dialled and
// the kernel's view of the process, the server sees tollgate's upstream
// role (not the one psql asked for), and a denied statement never reaches
// the server. The same psql outside the workload connects directly. A
// client in the workload that checks getpeername sees the path it dialled;
// pgx's cancels work; with the daemon killed nothing gets through.
func TestPostgresUnixSocket(t *testing.T) {
	s := newPGUnixSetup(t, pgUnixPolicy)
	s.pg.psqlSuper(t, pgDatabase, "CREATE TABLE secrets (k text)", "ALTER TABLE secrets OWNER TO "+pgScramUser)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port := strconv.Itoa(s.pg.port)
	tok := fmt.Sprintf("unix_tok_%d", time.Now().UnixNano())

	// Through tollgate. psql asks for app_md5 and gives no password; the
	// server's trust login on its socket would take app_md5 as is.
	psqlArgs := func(sql ...string) []string {
		a := []string{"-X", "-At", "-v", "ON_ERROR_STOP=0", "-h", s.pg.sockDir, "-p", port, "-U", pgMD5User, "-d", pgDatabase}
		for _, q := range sql {
			a = append(a, "-c", q)
		}
		return a
	}
	out, errOut, err := runClient(t, ctx, s.cgroup, nil, "", "psql", psqlArgs("SELECT current_user AS "+tok)...)
	if err != nil {
		t.Fatalf("psql through the unix socket: %v\n%s\n%s", err, out, errOut)
	}
	if out != pgScramUser+"\n" {
		t.Errorf("through tollgate, current_user = %q, want %q (the target's upstream role)", out, pgScramUser)
	}
	out, errOut, err = runClient(t, ctx, s.cgroup, nil, "", "psql", psqlArgs("SELECT k FROM secrets")...)
	if err == nil || !strings.Contains(errOut, `denied by rule "no-secrets": secrets are off limits`) {
		t.Errorf("the denied statement was not refused: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	log := s.pg.serverLog()
	if !strings.Contains(log, pgScramUser+"@"+pgDatabase+" LOG:  statement: SELECT current_user AS "+tok) {
		t.Errorf("the server did not run the statement as %s:\n%s", pgScramUser, log)
	}
	if strings.Contains(log, "FROM secrets") {
		t.Errorf("the denied statement reached the server:\n%s", log)
	}

	recs := s.d.settledRecords()
	starts, _ := sessionRecords(recs)
	if len(starts) != 2 {
		t.Errorf("%d session.start records, want 2 (one per psql)", len(starts))
	}
	for _, start := range starts {
		if want := "unix:" + s.pg.socket(); start.Dst != want {
			t.Errorf("session.start dst %q, want %q", start.Dst, want)
		}
		if start.Process == nil || start.Process.Comm != "psql" || start.Process.CgroupID == 0 || start.Process.Pid == 0 {
			t.Errorf("session.start process %+v, want psql with its pid and cgroup", start.Process)
		}
		if want := filepath.Join(filepath.Dir(s.d.cfg.Socket), agent.UnixSocketDir, "pg.sock"); start.Listener != want || start.Client != "unix" {
			t.Errorf("session.start listener %q, client %q; want %q, unix", start.Listener, start.Client, want)
		}
		if start.Detail["workload"] != "pg-workload" || start.Detail["user"] != pgMD5User {
			t.Errorf("session.start detail %v", start.Detail)
		}
	}
	var allowed, denied bool
	for _, r := range statements(recs) {
		if starts[r.Session] == nil || r.Decision == nil {
			continue
		}
		switch {
		case strings.Contains(r.Statement.Text, tok) && r.Decision.Action == "allow":
			allowed = true
		case slices.Contains(r.Statement.Tables, "secrets") && r.Decision.Action == "deny" && r.Decision.Rule == "no-secrets":
			denied = true
		}
	}
	if !allowed || !denied {
		t.Errorf("statement records: allowed %v, denied %v; want both", allowed, denied)
	}

	// The status names the protected path and the daemon's socket.
	st := s.d.status()
	var ts *agent.TargetStatus
	for i := range st.Targets {
		if st.Targets[i].Name == "pg" {
			ts = &st.Targets[i]
		}
	}
	if ts == nil || !slices.Contains(ts.Destinations, "unix:"+s.pg.socket()) {
		t.Errorf("status targets %+v: want unix:%s among the destinations", st.Targets, s.pg.socket())
	}

	// getpeername answers the path the client dialled, not the daemon's.
	py := "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.getpeername())\n"
	out, errOut, err = runClient(t, ctx, s.cgroup, nil, "", "python3", "-c", py, s.pg.socket())
	if err != nil {
		t.Fatalf("python getpeername: %v\n%s", err, errOut)
	}
	if got := strings.TrimSpace(out); got != s.pg.socket() {
		t.Errorf("getpeername in the workload = %q, want %q", got, s.pg.socket())
	}

	// Cancels: pgx sends its CancelRequest to the address of its
	// session's socket, which the kernel rewrites too (or, if it asked
	// for the daemon's socket, which tollgate serves for its own keys);
	// the query really stops on the server.
	before := len(s.d.records())
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.pg.sockDir, s.pg.port, pgScramUser, pgDatabase)
	out, errOut, err = runClient(t, ctx, s.cgroup, nil, "", pgclientBin(t), "cancel", dsn)
	if err != nil {
		t.Fatalf("pgclient cancel: %v\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{"cancelled: ERROR 57014: canceling statement due to user request within 10s true",
		"sleeping on the server: 0", "cancel request: ok", "explicit cancel: ERROR 57014"} {
		if !strings.Contains(out, want) {
			t.Errorf("pgclient output lacks %q:\n%s", want, out)
		}
	}
	cancels := 0
	for _, r := range s.d.settledRecords()[before:] {
		if r.Kind == audit.KindSessionStart && r.Detail["request"] == "cancel" {
			cancels++
		}
	}
	if cancels != 2 {
		t.Errorf("%d cancel requests recorded, want 2", cancels)
	}

	// Fail closed: with the daemon killed the pinned program still
	// rewrites the connect, to a socket nobody serves; nothing reaches
	// the server. Back up, the same psql works again.
	s.d.kill()
	down := fmt.Sprintf("unix_down_%d", time.Now().UnixNano())
	out, errOut, err = runClient(t, ctx, s.cgroup, nil, "", "psql", psqlArgs("SELECT 1 AS "+down)...)
	if err == nil {
		t.Errorf("psql through the unix socket with the daemon killed succeeded: %q", out)
	}
	if strings.Contains(s.pg.serverLog(), down) {
		t.Errorf("with the daemon killed, the statement reached the server (stderr %q)", errOut)
	}
	s.d.start()
	out, errOut, err = runClient(t, ctx, s.cgroup, nil, "", "psql", psqlArgs("SELECT current_user")...)
	if err != nil || out != pgScramUser+"\n" {
		t.Errorf("after the restart: %v, %q\n%s", err, out, errOut)
	}

	// Control: outside the workload the same psql reaches the server
	// directly, as the role it asked for, and nothing is recorded.
	before = len(s.d.records())
	ctl := fmt.Sprintf("unix_ctl_%d", time.Now().UnixNano())
	out, errOut, err = runClient(t, ctx, "", nil, "", "psql", psqlArgs("SELECT current_user AS "+ctl)...)
	if err != nil {
		t.Fatalf("psql outside the workload: %v\n%s\n%s", err, out, errOut)
	}
	if out != pgMD5User+"\n" {
		t.Errorf("outside the workload, current_user = %q, want %q", out, pgMD5User)
	}
	for _, r := range s.d.records()[before:] {
		if r.Kind == audit.KindSessionStart || r.Kind == audit.KindStatement {
			t.Errorf("a direct connection was recorded: %+v", r)
		}
	}
}

// TestPostgresUnixSocketReload: a reload that drops a target's unix match
// closes the daemon's socket for it and stops redirecting (the workload's
// psql then reaches the server directly, as the config now says); one that
// adds it back protects the socket again, without a restart.
func TestPostgresUnixSocketReload(t *testing.T) {
	s := newPGUnixSetup(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	who := func() string {
		t.Helper()
		out, errOut, err := runClient(t, ctx, s.cgroup, nil, "", "psql", "-X", "-At", "-h", s.pg.sockDir,
			"-p", strconv.Itoa(s.pg.port), "-U", pgMD5User, "-d", pgDatabase, "-c", "SELECT current_user")
		if err != nil {
			t.Fatalf("psql: %v\n%s\n%s", err, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	reload := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(s.d.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), from) {
			t.Fatalf("config lacks %q:\n%s", from, b)
		}
		before := s.d.status().ConfigHash
		if err := os.WriteFile(s.d.cfgPath, []byte(strings.Replace(string(b), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		s.d.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the new config in force", func() bool { return s.d.status().ConfigHash != before })
	}
	daemonSocket := filepath.Join(filepath.Dir(s.d.cfg.Socket), agent.UnixSocketDir, "pg.sock")
	if got := who(); got != pgScramUser {
		t.Fatalf("before the reload, current_user %q, want %q (through tollgate)", got, pgScramUser)
	}
	withUnix := `match: ["` + s.pg.addr() + `", "unix:` + s.pg.socket() + `"]`
	withoutUnix := `match: ["` + s.pg.addr() + `"]`
	reload(withUnix, withoutUnix)
	if got := who(); got != pgMD5User {
		t.Errorf("without the unix match, current_user %q, want %q (direct)", got, pgMD5User)
	}
	if _, err := os.Stat(daemonSocket); !os.IsNotExist(err) {
		t.Errorf("the daemon's socket %s is still there: %v", daemonSocket, err)
	}
	reload(withoutUnix, withUnix)
	if got := who(); got != pgScramUser {
		t.Errorf("with the unix match back, current_user %q, want %q (through tollgate)", got, pgScramUser)
	}
}

// TestPostgresUnixSocketConcurrent: 32 logins at once over the unix socket
// from one process of the workload (as a connection pool makes them). Each
// connect has its own socket and cookie, so each session gets its own
// origin: all succeed, and each is recorded with this process's pid.
func TestPostgresUnixSocketConcurrent(t *testing.T) {
	s := newPGUnixSetup(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.pg.sockDir, s.pg.port, pgMD5User, pgDatabase)
	const n = 32
	errs := make(chan error, n)
	users := make(chan string, n)
	leave := enterCgroup(t, s.cgroup)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			res, err := c.Exec(ctx, "SELECT current_user").ReadAll()
			if err != nil {
				errs <- err
				return
			}
			users <- string(res[0].Rows[0][0])
		}()
	}
	wg.Wait()
	leave()
	close(errs)
	close(users)
	for err := range errs {
		t.Errorf("login: %v", err)
	}
	got := 0
	for u := range users {
		got++
		if u != pgScramUser {
			t.Errorf("current_user %q, want %q (through tollgate)", u, pgScramUser)
		}
	}
	if got != n {
		t.Errorf("%d of %d sessions ran", got, n)
	}
	starts, _ := sessionRecords(s.d.settledRecords())
	mine := 0
	for _, r := range starts {
		if r.Process != nil && int(r.Process.Pid) == os.Getpid() && r.Dst == "unix:"+s.pg.socket() {
			mine++
		}
	}
	if mine != n {
		t.Errorf("%d session.start records name this process and the socket, want %d", mine, n)
	}
}
