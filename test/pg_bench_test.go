// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// BenchmarkPostgres runs pgbench over TCP loopback, in the same run,
// directly, through tollgate (audit on, every statement durable before it
// is forwarded) and through pgbouncer (session mode) as a reference proxy:
// select-only and TPC-B, -M simple|extended|prepared, 1, 8 and 32 clients,
// then the connect rate (pgbench -C). It reports TPS and the ratio to
// direct, latency, tollgate's CPU time per transaction, and writes a
// Markdown report to $TOLLGATE_BENCH_REPORT when set.
//
// Three tollgate targets: "tollgate" (audit.sync always), "tollgate-batch"
// (audit.sync batch: records written before forwarding, flushed within
// 10 ms) and "tollgate-tmpfs", which keeps its audit log on tmpfs: a
// diagnostic that separates the proxy's own cost from the cost of flushing
// the log to disk; it is not a supported configuration (records are not
// durable there). CPU per transaction is the proxy process's utime+stime
// over a run divided by the transactions pgbench reports, for tollgate and
// pgbouncer alike. "go-relay" is the floor of a proxy written in Go: a
// bare relay that reads and writes the bytes and does nothing else (see
// test/floor_relay_test.go); what tollgate spends above it is its own work.
//
//	go test -run '^$' -bench '^BenchmarkPostgres$' -benchtime 1x -timeout 60m ./test/
//
// TOLLGATE_PGBENCH_SECONDS sets the length of each run (default 8) and
// TOLLGATE_PGBENCH_ROUNDS the number of rounds (default 1), each of which
// runs every target in turn; cells report the medians. For a
// focused run, comma-separated lists narrow the matrix:
// TOLLGATE_PGBENCH_SCRIPTS (select-only, tpcb), TOLLGATE_PGBENCH_MODES
// (simple, extended, prepared), TOLLGATE_PGBENCH_CLIENTS (1, 8, 32) and
// TOLLGATE_PGBENCH_TARGETS (direct, pgbouncer, go-relay, tollgate, tollgate-batch,
// tollgate-tmpfs, connect); for example
//
//	TOLLGATE_PGBENCH_SCRIPTS=select-only TOLLGATE_PGBENCH_MODES=simple,prepared \
//	TOLLGATE_PGBENCH_CLIENTS=1,8 TOLLGATE_PGBENCH_TARGETS=direct,tollgate,tollgate-tmpfs
func BenchmarkPostgres(b *testing.B) {
	requireRoot(b)
	secs := 8
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_PGBENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	scripts := envList("TOLLGATE_PGBENCH_SCRIPTS", "select-only", "tpcb")
	modes := envList("TOLLGATE_PGBENCH_MODES", "simple", "extended", "prepared")
	var clientCounts []int
	for _, c := range envList("TOLLGATE_PGBENCH_CLIENTS", "1", "8", "32") {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			b.Fatalf("TOLLGATE_PGBENCH_CLIENTS: bad count %q", c)
		}
		clientCounts = append(clientCounts, n)
	}
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_PGBENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	allTargets := []string{"direct", "pgbouncer", "go-relay", "tollgate", "tollgate-batch", "tollgate-tmpfs"}
	targets := envList("TOLLGATE_PGBENCH_TARGETS", append(allTargets, "connect")...)
	want := func(t string) bool { return slices.Contains(targets, t) }
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	s := newPGSetup(b, "process", "")
	const db, scale = "bench", "16"
	s.createDB(b, db)
	dsn := s.pg.dsn(pgScramUser, db)
	if out, errOut, err := runClient(b, ctx, "", []string{"PGPASSWORD=" + pgScramPass}, "", "pgbench", "-i", "-q", "-s", scale, dsn); err != nil {
		b.Fatalf("pgbench -i: %v\n%s%s", err, out, errOut)
	}
	bouncer := startPgbouncer(b, s.pg, db)

	type target struct {
		name   string
		cgroup string
		env    []string
		dsn    string
		pid    func() int // the proxy process whose CPU time is measured
	}
	direct := target{name: "direct", env: []string{"PGPASSWORD=" + pgScramPass}, dsn: dsn}
	viaBouncer := target{name: "pgbouncer", env: []string{"PGPASSWORD=" + pgScramPass}, dsn: bouncer.dsn(pgScramUser, db),
		pid: func() int { return bouncer.cmd.Process.Pid }}
	var viaFloor target
	if want("go-relay") {
		floor := startFloorRelay(b, net.JoinHostPort(s.pg.host, strconv.Itoa(s.pg.port)))
		viaFloor = target{name: "go-relay", env: []string{"PGPASSWORD=" + pgScramPass}, dsn: floor.dsn(pgScramUser, db),
			pid: func() int { return floor.cmd.Process.Pid }}
	}
	d := s.d
	via := func(name string) target {
		return target{name: name, cgroup: s.cgroup, dsn: dsn, pid: func() int { return d.cmd.Process.Pid }}
	}

	// The tollgate targets are one daemon restarted with another config
	// between them: each keeps its own state directory.
	base := s.d.cfg
	running := "tollgate"
	shm := ""
	daemonFor := func(name string) {
		if running == name {
			return
		}
		cfg := base
		switch name {
		case "tollgate-batch":
			cfg.StateDir = filepath.Join(filepath.Dir(base.StateDir), "state-batch")
			cfg.Audit = "  sync: batch"
		case "tollgate-tmpfs":
			if shm == "" {
				var err error
				if shm, err = os.MkdirTemp("/dev/shm", "tollgate-bench-"); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { os.RemoveAll(shm) })
			}
			cfg.StateDir = filepath.Join(shm, "state")
		}
		d.stop()
		d = startDaemon(b, cfg)
		running = name
	}

	type result struct {
		tps, latMS float64
		txns       int64
		cpuUS      float64 // proxy CPU µs per transaction
	}
	runs := map[string][]result{} // key: target|script|mode|clients; one per round
	key := func(t, script, mode string, c int) string { return fmt.Sprintf("%s|%s|%s|%d", t, script, mode, c) }
	tpsRe := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	tpsConnRe := regexp.MustCompile(`tps = ([0-9.]+) \(including reconnection times\)`)
	latRe := regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	txRe := regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	run := func(t target, script, mode string, clients int, extra ...string) result {
		args := []string{"-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)), "-T", strconv.Itoa(secs)}
		if script == "select-only" {
			args = append(args, "-S")
		}
		args = append(append(args, extra...), t.dsn)
		var cpu0 time.Duration
		if t.pid != nil {
			cpu0 = procCPU(b, t.pid())
		}
		out, errOut, err := runClient(b, ctx, t.cgroup, t.env, "", "pgbench", args...)
		if err != nil {
			b.Fatalf("pgbench %s %v: %v\n%s%s", t.name, args, err, out, errOut)
		}
		var r result
		if m := tpsRe.FindStringSubmatch(out); m != nil {
			r.tps, _ = strconv.ParseFloat(m[1], 64)
		} else if m := tpsConnRe.FindStringSubmatch(out); m != nil {
			r.tps, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := latRe.FindStringSubmatch(out); m != nil {
			r.latMS, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := txRe.FindStringSubmatch(out); m != nil {
			r.txns, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if t.pid != nil && r.txns > 0 {
			r.cpuUS = float64(procCPU(b, t.pid())-cpu0) / float64(time.Microsecond) / float64(r.txns)
		}
		b.Logf("%-14s %-11s %-8s c=%-2d %s tps=%.0f lat=%.3fms cpu=%.0fµs/tx", t.name, script, mode, clients,
			strings.Join(extra, " "), r.tps, r.latMS, r.cpuUS)
		return r
	}
	matrix := func(t target) {
		for _, script := range scripts {
			for _, mode := range modes {
				for _, c := range clientCounts {
					k := key(t.name, script, mode, c)
					runs[k] = append(runs[k], run(t, script, mode, c))
				}
			}
		}
		if want("connect") {
			k := key(t.name, "connect", "simple", 8)
			runs[k] = append(runs[k], run(t, "select-only", "simple", 8, "-C"))
		}
	}

	// Rounds alternate the targets, so that a change of the machine's
	// load during the run hits all of them alike; each cell reports the
	// median of its rounds.
	b.ResetTimer()
	for round := range rounds {
		b.Logf("round %d of %d", round+1, rounds)
		for _, name := range allTargets {
			if !want(name) {
				continue
			}
			switch name {
			case "direct":
				matrix(direct)
			case "pgbouncer":
				matrix(viaBouncer)
			case "go-relay":
				matrix(viaFloor)
			default:
				daemonFor(name)
				matrix(via(name))
			}
		}
	}
	b.StopTimer()
	results := map[string]result{}
	for k, rs := range runs {
		results[k] = result{
			tps:   median(rs, func(r result) float64 { return r.tps }),
			latMS: median(rs, func(r result) float64 { return r.latMS }),
			cpuUS: median(rs, func(r result) float64 { return r.cpuUS }),
		}
	}

	// Report.
	var sb strings.Builder
	fmt.Fprintf(&sb, "pgbench %s s per run, scale %s, TCP loopback, %d CPUs, -j min(clients, 2); PostgreSQL 15, pgbouncer 1.18 (session mode, SCRAM).\n", strconv.Itoa(secs), scale, runtimeCPUs())
	fmt.Fprintf(&sb, "Medians of %d rounds; each round runs every target in turn.\n", rounds)
	fmt.Fprintf(&sb, "tollgate: audit.sync always (every statement's record flushed before it is forwarded); tollgate-batch: audit.sync batch\n"+
		"(written before it is forwarded, flushed within 10 ms); tollgate-tmpfs: always, audit log on tmpfs (diagnostic only).\n"+
		"go-relay: the floor of a Go proxy, a bare relay that reads and writes the bytes and nothing else (test/floor_relay_test.go).\n"+
		"CPU µs/tx: the proxy process's utime+stime over the run / pgbench's transactions.\n\n")
	tw := tabwriter.NewWriter(&sb, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "script\tmode\tclients\tdirect tps\tpgbouncer tps\tratio\tgo-relay tps\tratio\ttollgate tps\tratio\ttollgate-batch tps\tratio\ttollgate-tmpfs tps\tratio\t"+
		"CPU µs/tx pgbouncer\tgo-relay\ttollgate\tbatch\ttmpfs\t")
	for _, script := range scripts {
		for _, mode := range modes {
			for _, c := range clientCounts {
				dr := results[key("direct", script, mode, c)]
				pb := results[key("pgbouncer", script, mode, c)]
				gr := results[key("go-relay", script, mode, c)]
				tg := results[key("tollgate", script, mode, c)]
				tb := results[key("tollgate-batch", script, mode, c)]
				tm := results[key("tollgate-tmpfs", script, mode, c)]
				if dr.tps == 0 && tg.tps == 0 && pb.tps == 0 && gr.tps == 0 && tb.tps == 0 && tm.tps == 0 {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", script, mode, c,
					dr.tps, pb.tps, pb.tps/dr.tps, gr.tps, gr.tps/dr.tps, tg.tps, tg.tps/dr.tps, tb.tps, tb.tps/dr.tps, tm.tps, tm.tps/dr.tps,
					pb.cpuUS, gr.cpuUS, tg.cpuUS, tb.cpuUS, tm.cpuUS)
			}
		}
	}
	tw.Flush()
	if slices.Contains(clientCounts, 1) {
		sb.WriteString("\nadded latency per transaction at 1 client (proxy − direct, pgbench latency average):\n")
		for _, script := range scripts {
			for _, mode := range modes {
				dr, pb, gr := results[key("direct", script, mode, 1)], results[key("pgbouncer", script, mode, 1)], results[key("go-relay", script, mode, 1)]
				tg, tb, tm :=
					results[key("tollgate", script, mode, 1)], results[key("tollgate-batch", script, mode, 1)],
					results[key("tollgate-tmpfs", script, mode, 1)]
				fmt.Fprintf(&sb, "  %-11s %-8s direct %.3f ms, pgbouncer %+.3f ms, go-relay %+.3f ms, tollgate %+.3f ms, tollgate-batch %+.3f ms, tollgate-tmpfs %+.3f ms\n",
					script, mode, dr.latMS, pb.latMS-dr.latMS, gr.latMS-dr.latMS, tg.latMS-dr.latMS, tb.latMS-dr.latMS, tm.latMS-dr.latMS)
			}
		}
	}
	if want("connect") {
		sb.WriteString("\nconnect rate (pgbench -C -S -M simple -c 8: a new connection per transaction), tps:\n")
		for _, t := range allTargets {
			r := results[key(t, "connect", "simple", 8)]
			fmt.Fprintf(&sb, "  %-15s %.0f\n", t, r.tps)
		}
	}
	b.Log("\n" + sb.String())
	if p := os.Getenv("TOLLGATE_BENCH_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			b.Error(err)
		}
	}
}

// median is the median of f over rs (the mean of the middle two for an
// even count); 0 for none.
func median[T any](rs []T, f func(T) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// procCPU is a process's user plus system CPU time so far.
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which may contain spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// selfCPU is this process's user plus system CPU time so far, from
// getrusage (finer than /proc's clock ticks).
func selfCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runtimeCPUs() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor\t") + 1
}

// bouncer is a pgbouncer in session mode in front of a cluster.
type bouncer struct {
	cmd  *exec.Cmd
	port int
}

func (p *bouncer) dsn(user, db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", p.port, user, db)
}

// startPgbouncer runs pgbouncer (as the postgres user: it refuses root) on
// 127.0.0.1, in session mode, authenticating clients with SCRAM.
func startPgbouncer(t testing.TB, pg *pgCluster, db string) *bouncer {
	t.Helper()
	dir := filepath.Join(pg.dir, "pgbouncer")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &bouncer{port: freePort(t, "127.0.0.1")}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s/userlist.txt
pool_mode = session
max_client_conn = 500
default_pool_size = 100
logfile = %s/pgbouncer.log
`, db, pg.host, pg.port, db, p.port, dir, dir)
	os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600)
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(fmt.Sprintf("%q %q\n", pgScramUser, pgScramPass)), 0o600)
	filepath.Walk(dir, func(path string, _ os.FileInfo, _ error) error {
		return os.Chown(path, int(pg.cred.Uid), int(pg.cred.Gid))
	})
	p.cmd = exec.Command("pgbouncer", filepath.Join(dir, "pgbouncer.ini"))
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGINT)
		p.cmd.Wait()
	})
	for i := 0; ; i++ {
		if exec.Command(filepath.Join(pgBin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-d", db).Run() == nil {
			return p
		}
		if i == 100 {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer did not start\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// envList is the comma-separated list in an environment variable, or def
// when it is unset or empty.
func envList(name string, def ...string) []string {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	var l []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			l = append(l, f)
		}
	}
	return l
}
