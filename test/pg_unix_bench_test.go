// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// BenchmarkPostgresUnixConnect measures a PostgreSQL login over the unix
// socket (pgconn.Connect to the socket directory, as app_scram with no
// password) and then a SELECT 1 round trip, direct (outside the workload:
// the server's trust login) and intercepted (the kernel rewrites the path,
// the daemon finds the origin through sock_diag, records session.start
// durably and logs in upstream over the socket). Each iteration is one
// connection: connect+login, one query, close.
func BenchmarkPostgresUnixConnect(b *testing.B) {
	s := newPGUnixSetup(b, "")
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.pg.sockDir, s.pg.port, pgScramUser, pgDatabase)
	for _, tc := range []struct {
		name    string
		through bool
	}{{"direct", false}, {"intercepted", true}} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.through {
				leave := enterCgroup(b, s.cgroup)
				defer leave()
			}
			ctx := context.Background()
			var login, query []time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				c, err := pgconn.Connect(ctx, dsn)
				t1 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				c.Close(ctx)
				login = append(login, t1.Sub(t0))
				query = append(query, t2.Sub(t1))
			}
			b.ReportMetric(float64(pct(login, 50).Nanoseconds())/1e3, "login-p50-µs")
			b.ReportMetric(float64(pct(login, 99).Nanoseconds())/1e3, "login-p99-µs")
			b.ReportMetric(float64(pct(query, 50).Nanoseconds())/1e3, "select1-p50-µs")
		})
	}
}
