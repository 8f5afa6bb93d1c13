// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppendTree measures durable appends (fsync on) with the Merkle
// tree off (the foundation's log: no hook), on, and on with checkpoints
// signed every second, for 1, 16 and 256 producers. The disk and CPU of a
// shared machine vary a lot over a minute, so the modes alternate in
// rounds of about a second each (TOLLGATE_BENCH_ROUNDS, default 5) and the
// benchmark reports each mode's median records/s and p99 latency over all
// rounds, the tree's cost: 1 - median(on+checkpoints)/median(off) (and the
// median over rounds of the same ratio within each round), the bytes of
// pages each mode's commits wrote per record, and
// each mode's CPU time per record (the process's, while only that mode
// ran), which the machine's load disturbs much less. It ignores b.N: run
// it with -benchtime 1x. TOLLGATE_BENCH_ROUND sets the round length.
func BenchmarkAppendTree(b *testing.B) {
	rounds, round := 5, time.Second
	if s := os.Getenv("TOLLGATE_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("TOLLGATE_BENCH_ROUND"); s != "" {
		round, _ = time.ParseDuration(s)
	}
	key, err := LoadOrCreateHostKey(b.TempDir(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	modes := []string{"off", "on", "ckpt"}
	for _, producers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			logs := map[string]*Log{}
			for _, mode := range modes {
				l := openTreeMode(b, mode, Options{HostID: "bench"}, key)
				defer l.Close()
				logs[mode] = l
			}
			rates := map[string][]float64{}
			lats := map[string][]time.Duration{}
			cpu := map[string]time.Duration{}
			written := map[string]int64{}
			for r := range rounds {
				// Rotate the order, so that no mode always follows the
				// same one (and its writeback).
				for i := range modes {
					mode := modes[(i+r)%len(modes)]
					c0, w0 := cpuTime(), pagesWritten(logs[mode])
					n, lat := appendFor(b, logs[mode], producers, round)
					cpu[mode] += cpuTime() - c0
					written[mode] += pagesWritten(logs[mode]) - w0
					rates[mode] = append(rates[mode], n)
					lats[mode] = append(lats[mode], lat...)
				}
			}
			for _, mode := range modes {
				b.ReportMetric(median(rates[mode]), mode+"-rec/s")
				b.ReportMetric(float64(percentile(lats[mode], 0.99).Microseconds()), mode+"-p99-µs")
				b.ReportMetric(float64(cpu[mode].Microseconds())/float64(len(lats[mode])), mode+"-cpu-µs/rec")
				b.ReportMetric(float64(written[mode])/float64(len(lats[mode])), mode+"-written-B/rec")
			}
			b.ReportMetric(100*(1-median(rates["ckpt"])/median(rates["off"])), "cost-%")
			// The same from the rounds' own pairs: each round's ratio
			// compares modes that ran within seconds of each other, so
			// slow drifts of the machine's load cancel out.
			paired := make([]float64, rounds)
			for r := range rounds {
				paired[r] = 1 - rates["ckpt"][r]/rates["off"][r]
			}
			b.ReportMetric(100*median(paired), "paired-cost-%")
		})
	}
}

// pagesWritten is how many bytes of pages the log's commits wrote so far.
func pagesWritten(l *Log) int64 {
	l.dbMu.RLock()
	defer l.dbMu.RUnlock()
	if l.db == nil {
		return 0
	}
	st := l.db.Stats()
	return st.TxStats.GetWrite() * int64(l.db.Info().PageSize)
}

// BenchmarkCommitTree measures the CPU the tree adds to a commit, without
// the disk and the scheduling noise of many producers: batches of 1, 16
// and 256 records (what 1, 16 and 256 producers commit together) are
// appended with AppendAll to a log without fsync, with the tree off, on,
// and on with checkpoints every second. It reports CPU time per record;
// the difference between modes is the tree's work in the writer.
func BenchmarkCommitTree(b *testing.B) {
	key, err := LoadOrCreateHostKey(b.TempDir(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 16, 256} {
		for _, mode := range []string{"off", "on", "ckpt"} {
			b.Run(fmt.Sprintf("batch=%d/tree=%s", n, mode), func(b *testing.B) {
				l := openTreeMode(b, mode, Options{HostID: "bench", NoSync: true}, key)
				defer l.Close()
				ctx := context.Background()
				rs := make([]*Record, n)
				c0 := cpuTime()
				for i := 0; b.Loop(); i++ {
					for j := range rs {
						rs[j] = benchRecord(i*n + j)
					}
					if err := l.AppendAll(ctx, rs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N*n), "cpu-ns/rec")
			})
		}
	}
}

// appendFor appends from producers goroutines for about d and returns the
// rate and every append's latency.
func appendFor(b *testing.B, l *Log, producers int, d time.Duration) (float64, []time.Duration) {
	ctx := context.Background()
	lat := make([][]time.Duration, producers)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				if _, err := l.Append(ctx, benchRecord(i)); err != nil {
					b.Error(err)
					return
				}
				lat[p] = append(lat[p], time.Since(t0))
			}
		})
	}
	wg.Wait()
	all := slices.Concat(lat...)
	return float64(len(all)) / time.Since(start).Seconds(), all
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func percentile(v []time.Duration, q float64) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[int(q*float64(len(s)-1))]
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openTreeMode opens a fresh log in a temporary directory for one of the
// tree benchmarks' modes: "off" (no Merkle tree), "on" (the tree), or
// "ckpt" (the tree and signed checkpoints with key).
func openTreeMode(b *testing.B, mode string, opts Options, key *HostKey) *Log {
	b.Helper()
	path := filepath.Join(b.TempDir(), "audit.db")
	var l *Log
	var err error
	switch mode {
	case "off":
		l, err = open(path, opts, nil)
	case "on":
		l, err = Open(path, opts)
	default:
		opts.Key = key
		l, err = Open(path, opts)
	}
	if err != nil {
		b.Fatal(err)
	}
	return l
}
