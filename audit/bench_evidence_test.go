// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"archive/tar"
	"bytes"
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
				path := filepath.Join(b.TempDir(), "audit.db")
				opts := Options{HostID: "bench"}
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
				path := filepath.Join(b.TempDir(), "audit.db")
				opts := Options{HostID: "bench", NoSync: true}
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

// benchBundle returns a bundle file of n realistic records (sessions of
// statements and results), made once per process and size.
var benchBundles sync.Map // n → path

// Making a bundle of a million records takes a minute or more: with
// TOLLGATE_BENCH_BUNDLE_DIR set, the bundle (and its key) is kept in that
// directory and reused by later runs of the same size; without it, it is
// made in a temporary directory that is removed when the benchmark ends.
func benchBundle(b *testing.B, n int) string {
	if p, ok := benchBundles.Load(n); ok {
		return p.(string)
	}
	var dir string
	if keep := os.Getenv("TOLLGATE_BENCH_BUNDLE_DIR"); keep != "" {
		dir = filepath.Join(keep, strconv.Itoa(n))
		path := filepath.Join(dir, "bundle.tar")
		if _, err := os.Stat(path); err == nil {
			benchBundles.Store(n, path)
			return path
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "tollgate-bench-bundle"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			benchBundles.Delete(n)
			os.RemoveAll(dir)
		})
	}
	key, err := LoadOrCreateHostKey(dir, "bench")
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(filepath.Join(dir, "audit.db"), Options{HostID: "bench", Key: key, NoSync: true, CheckpointInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	// Appends from many producers commit in large batches.
	const producers = 64
	var wg sync.WaitGroup
	per := n / producers
	ctx := context.Background()
	start := time.Now()
	for p := range producers {
		wg.Go(func() {
			for i := 0; i < per; i++ {
				r := benchRecord(p*per + i)
				sess := "sess-" + strconv.Itoa(p) + "-" + strconv.Itoa(i/20)
				switch i % 20 {
				case 0:
					r.Kind, r.Statement, r.Decision = KindSessionStart, nil, nil
				case 19:
					r.Kind, r.Statement, r.Decision, r.Bytes = KindSessionEnd, nil, nil, &Bytes{Up: 1000, Down: 20000}
				default:
					if i%2 == 0 {
						r.Kind, r.Decision, r.Detail = KindResult, nil, map[string]string{"tag": "DELETE 1"}
					}
				}
				r.Session = sess
				if _, err := l.Append(ctx, r); err != nil {
					b.Error(err)
					return
				}
				if p == 0 && i%(per/50+1) == 0 {
					if _, err := l.Checkpoint(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	b.Logf("wrote %d records in %s", l.Size(), time.Since(start).Round(time.Millisecond))
	ex, err := l.PrepareExport(ctx, ExportOptions{Tool: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	tmp := filepath.Join(dir, "bundle.tar.part")
	f, err := os.Create(tmp)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ex.WriteTo(ctx, f); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	l.Close()
	os.Remove(filepath.Join(dir, "audit.db"))
	path := filepath.Join(dir, "bundle.tar")
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	benchBundles.Store(n, path)
	return path
}

// BenchmarkVerify measures Verify on a bundle of 1,000,000 records (set
// TOLLGATE_BENCH_RECORDS for another size): records/s and bundle bytes per
// record. The bundle is read from the page cache.
func BenchmarkVerify(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("TOLLGATE_BENCH_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	path := benchBundle(b, n)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	key, err := LoadOrCreateHostKey(filepath.Dir(path), "bench")
	if err != nil {
		b.Fatal(err)
	}
	v, err := ParseVerifierKey(key.VerifierKey)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var rep *VerifyReport
	cpu0 := cpuTime()
	for b.Loop() {
		rep, err = Verify(bytes.NewReader(data), VerifyOptions{Key: v})
		if err != nil {
			b.Fatalf("%v: %v", err, rep.Failures)
		}
	}
	// On a shared machine wall-clock throughput depends on the load;
	// records per CPU-second do not (2 idle cores give about twice).
	b.ReportMetric(float64(rep.Records)*float64(b.N)/(cpuTime()-cpu0).Seconds(), "rec/cpu-s")
	b.ReportMetric(float64(rep.Records)*float64(b.N)/b.Elapsed().Seconds(), "rec/s")
	b.ReportMetric(float64(len(data))/float64(rep.Records), "bytes/rec")
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == BundleRecords {
			// What the bundle adds to the records themselves (proofs,
			// checkpoints, manifest, tar headers).
			b.ReportMetric(float64(int64(len(data))-h.Size)/float64(rep.Records), "overhead-bytes/rec")
			b.ReportMetric(float64(h.Size)/float64(rep.Records), "record-bytes/rec")
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
