// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// BenchmarkPostgresIdleRSS opens 90 PostgreSQL sessions through tollgate
// (pgconn, process identity, one query each, then idle) and reports the
// daemon's resident memory per open session, with pgbouncer's (session
// mode, the same sessions) in the same run as the reference. Each session
// holds one server connection either way, so 90 stays under pgbouncer's
// pool (100) and the test cluster's max_connections.
//
//	go test -run '^$' -bench '^BenchmarkPostgresIdleRSS$' -benchtime 1x ./test/
func BenchmarkPostgresIdleRSS(b *testing.B) {
	requireRoot(b)
	const n = 90
	s := newPGSetup(b, "process", "")
	const db = "idle"
	s.createDB(b, db)
	bouncer := startPgbouncer(b, s.pg, db)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	open := func(dsn string, n int) []*pgconn.PgConn {
		conns := make([]*pgconn.PgConn, 0, n)
		for range n {
			c, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				b.Fatalf("connect %d: %v", len(conns), err)
			}
			if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		return conns
	}
	closeAll := func(conns []*pgconn.PgConn) {
		for _, c := range conns {
			c.Close(ctx)
		}
	}
	// within opens sessions from inside cgroup (so that tollgate
	// intercepts them), or from here when it is empty.
	within := func(cgroup, dsn string, n int) []*pgconn.PgConn {
		if cgroup != "" {
			leave := enterCgroup(b, cgroup)
			defer leave()
		}
		return open(dsn, n)
	}
	perSession := func(pid int, dsn string, cgroup string) float64 {
		// One session first, so that what the first login initialises
		// once (pg_query, the policy's caches, TLS and SCRAM state) is
		// not counted per session.
		closeAll(within(cgroup, dsn, 1))
		time.Sleep(time.Second)
		before := rss(b, pid)
		conns := within(cgroup, dsn, n)
		time.Sleep(time.Second)
		after := rss(b, pid)
		closeAll(conns)
		return float64(after-before) / n / 1024
	}

	for i := 0; i < b.N; i++ {
		pb := perSession(bouncer.cmd.Process.Pid, bouncer.dsn(pgScramUser, db)+" password="+pgScramPass, "")
		tg := perSession(s.d.cmd.Process.Pid, s.pg.dsn(pgScramUser, db), s.cgroup)
		b.Logf("RSS per idle session (%d open): pgbouncer %.1f KiB, tollgate %.1f KiB", n, pb, tg)
		b.ReportMetric(pb, "pgbouncer-KiB/session")
		b.ReportMetric(tg, "tollgate-KiB/session")
	}
}
