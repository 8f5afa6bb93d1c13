// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/policy/sql"
)

// serverStatements returns the statements the server logged for user@db
// (log_statement=all logs each one as it starts), normalised like the
// audit records' texts.
func serverStatements(t *testing.T, log, user, db string) map[string]int {
	t.Helper()
	line := regexp.MustCompile(`^\S+ \S+ \S+ \[\d+\] ` + regexp.QuoteMeta(user+"@"+db) + ` LOG:  (?:statement|execute [^:]*): (.*)$`)
	c := sql.New(sql.Options{})
	got := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			got[c.Classify(m[1]).Text]++
		}
	}
	return got
}

// TestPostgresKillUnderLoad kills the daemon with SIGKILL while pgbench
// runs through it in every query mode: every statement the server logged
// for those sessions has a durable statement record. Nothing ran
// unrecorded. It runs in both sync modes: in batch mode a record is
// written to the journal, not yet flushed, when its statement is
// forwarded, and that is enough for a crash of the daemon (not of the
// machine).
func TestPostgresKillUnderLoad(t *testing.T) {
	for _, mode := range []string{"always", "batch"} {
		t.Run(mode, func(t *testing.T) {
			testPostgresKillUnderLoad(t, "  sync: "+mode)
		})
	}
}

func testPostgresKillUnderLoad(t *testing.T, audit string) {
	s := newPGSetupAudit(t, "process", "", audit)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const db = "killed"
	s.createDB(t, db)
	dsn := s.pg.dsn(pgScramUser, db)
	if out, errOut, err := runClient(t, ctx, s.cgroup, nil, "", "pgbench", "-i", "-s", "1", dsn); err != nil {
		t.Fatalf("pgbench -i: %v\n%s%s", err, out, errOut)
	}
	type run struct {
		done chan struct{}
		out  string
	}
	var runs []*run
	for _, mode := range []string{"simple", "extended", "prepared"} {
		r := &run{done: make(chan struct{})}
		runs = append(runs, r)
		go func() {
			defer close(r.done)
			o, e, err := runClient(t, ctx, s.cgroup, nil, "", "pgbench", "-n", "-M", mode, "-c", "4", "-j", "2", "-T", "60", dsn)
			r.out = fmt.Sprintf("%s: %v\n%s%s", mode, err, o, e)
		}()
	}
	time.Sleep(3 * time.Second)
	s.d.kill()
	for _, r := range runs {
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Fatal("pgbench did not end after the daemon was killed")
		}
		t.Log(r.out)
	}

	logged := serverStatements(t, s.pg.serverLog(), pgScramUser, db)
	recorded := map[string]int{}
	for _, r := range statements(s.d.records()) {
		recorded[r.Statement.Text]++
	}
	total := 0
	for text, n := range logged {
		if text == "" {
			// A comment alone runs nothing: pgconn's "-- ping", which
			// tollgate's upstream login sends when the connection has
			// unread input before it is hijacked.
			continue
		}
		total += n
		if recorded[text] < n {
			t.Errorf("server ran %d × %q, only %d recorded", n, text, recorded[text])
		}
	}
	updates := logged["UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;"]
	if total < 100 || updates == 0 {
		t.Fatalf("too little load before the kill to prove anything: %d statements, %d account updates", total, updates)
	}
	t.Logf("%d statements executed by the server, all recorded; %d statement records", total, len(statements(s.d.records())))
}
