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
	"testing"
	"text/tabwriter"
	"time"
)

// switchPatterns are the protocol switches that testdata/pg/switch.py and
// pgclient switch-bench time, in the order they print them, then each
// client's transaction that mixes the protocols.
var switchPatterns = []string{"simple-simple", "extended-extended", "extended-simple", "simple-extended"}

// TestPostgresProtocolSwitch runs clients that switch between the simple
// and the extended protocol, as psycopg, pgx and JDBC do in ordinary use,
// directly and through tollgate, each with its driver's trace of every
// message both ways: psycopg's `with conn.transaction():
// conn.execute("select 1")` (an extended BEGIN, a simple SELECT, an
// extended COMMIT), a pgx transaction mixing simple queries with unnamed
// and cached prepared statements, and the four switches. The client must
// see exactly the same messages.
func TestPostgresProtocolSwitch(t *testing.T) {
	s := newPGSetup(t, "process", "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cg := func(through bool) string {
		if through {
			return s.cgroup
		}
		return ""
	}

	t.Run("psycopg", func(t *testing.T) {
		if _, err := os.Stat(python3); err != nil {
			t.Skip("no system python3")
		}
		script, err := filepath.Abs("testdata/pg/switch.py")
		if err != nil {
			t.Fatal(err)
		}
		out := s.runBoth(t, "switchpy", nil, func(through bool, db string) (string, string, error) {
			_, env := clientEnv(through)
			return runClient(t, ctx, cg(through), env, "", python3, script, "trace", s.pg.dsn(pgScramUser, db))
		})
		// The block really mixes the protocols (what the issue is about).
		want := "F\t13\tParse\t \"\" \"BEGIN\" 0\n"
		if i := strings.Index(out, want); i < 0 ||
			!strings.Contains(out[i:], "F\t13\tQuery\t \"select 1\"\n") ||
			!strings.Contains(out[i:], "F\t14\tParse\t \"\" \"COMMIT\" 0\n") {
			t.Errorf("psycopg's transaction block is not an extended BEGIN, a simple SELECT and an extended COMMIT:\n%s", truncateLog(out))
		}
	})

	t.Run("pgx", func(t *testing.T) {
		bin := pgclientBin(t)
		out := s.runBoth(t, "switchpgx", nil, func(through bool, db string) (string, string, error) {
			_, env := clientEnv(through)
			return runClient(t, ctx, cg(through), env, "", bin, "switch", s.pg.dsn(pgScramUser, db))
		})
		for _, want := range []string{"F\tQuery\t11\t \"begin\"\n", "F\tParse\t23\t \"\" \"select $1::int\" 0\n",
			"F\tQuery\t14\t \"select 1\"\n", "F\tBind\t83\t \"\" \"stmtcache_", "F\tQuery\t12\t \"commit\"\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("pgx trace lacks %q:\n%s", want, truncateLog(out))
			}
		}
	})
}

// BenchmarkPostgresProtocolSwitch measures what tollgate adds to a
// statement that follows another one, for each switch between the simple
// and the extended protocol (simple→simple, extended→extended,
// extended→simple, simple→extended), and to psycopg's and pgx's
// transactions that mix them, against a direct connection in the same
// run. The clients (testdata/pg/switch.py with psycopg, pgclient
// switch-bench with pgx) time each exchange themselves and print medians;
// direct and proxied runs alternate, and the median of the rounds is
// reported.
//
//	go test -run '^$' -bench '^BenchmarkPostgresProtocolSwitch$' -benchtime 1x ./test/
//
// TOLLGATE_SWITCH_ROUNDS (default 3) and TOLLGATE_SWITCH_N (exchanges per
// pattern and round, default 1000) change the run's length.
func BenchmarkPostgresProtocolSwitch(b *testing.B) {
	rounds, n := 3, 1000
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_SWITCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_SWITCH_N")); err == nil && v > 0 {
		n = v
	}
	s := newPGSetup(b, "process", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dsn := s.pg.dsn(pgScramUser, pgDatabase)
	script, err := filepath.Abs("testdata/pg/switch.py")
	if err != nil {
		b.Fatal(err)
	}
	type client struct {
		name string
		cmd  []string
		last string // its transaction's line
	}
	clients := []client{{"pgx", []string{pgclientBin(b), "switch-bench", dsn, strconv.Itoa(n)}, "pgx-block"}}
	if _, err := os.Stat(python3); err == nil {
		clients = append(clients, client{"psycopg", []string{python3, script, "bench", dsn, strconv.Itoa(n)}, "psycopg-block"})
	}
	// medians[client][target][line] holds one median (µs) per round.
	medians := map[string]map[string]map[string][]float64{}
	run := func(c client, through bool) {
		cgroup, env, target := "", []string{"PGPASSWORD=" + pgScramPass}, "direct"
		if through {
			cgroup, env, target = s.cgroup, nil, "tollgate"
		}
		out, errOut, err := runClient(b, ctx, cgroup, env, "", c.cmd[0], c.cmd[1:]...)
		if err != nil {
			b.Fatalf("%s %s: %v\n%s%s", c.name, target, err, out, errOut)
		}
		if medians[c.name] == nil {
			medians[c.name] = map[string]map[string][]float64{}
		}
		if medians[c.name][target] == nil {
			medians[c.name][target] = map[string][]float64{}
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				b.Fatalf("%s: unexpected line %q", c.name, l)
			}
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				b.Fatalf("%s: unexpected line %q", c.name, l)
			}
			medians[c.name][target][f[0]] = append(medians[c.name][target][f[0]], v)
		}
	}
	b.ResetTimer()
	for range rounds {
		for _, c := range clients {
			run(c, false)
			run(c, true)
		}
	}
	b.StopTimer()

	mid := func(vs []float64) float64 {
		if len(vs) == 0 {
			return 0
		}
		vs = slices.Clone(vs)
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "latency of the second of two exchanges (median of %d, median of %d rounds), µs; TCP loopback, %d CPUs\n", n, rounds, runtimeCPUs())
	tw := tabwriter.NewWriter(&sb, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "client\tpattern\tdirect\ttollgate\tadded\t")
	for _, c := range clients {
		for _, p := range append(slices.Clone(switchPatterns), c.last) {
			d, tg := mid(medians[c.name]["direct"][p]), mid(medians[c.name]["tollgate"][p])
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%+.0f\t\n", c.name, p, d, tg, tg-d)
			b.ReportMetric(tg-d, c.name+"-"+p+"-added-µs")
		}
	}
	tw.Flush()
	// On stdout: a benchmark's log is cut to a few lines.
	fmt.Print(sb.String())
}
