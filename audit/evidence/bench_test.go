// SPDX-License-Identifier: Apache-2.0

package evidence_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// benchBundles are the bundles benchBundle made in this process, by size.
var benchBundles sync.Map // n → path

// benchBundle returns a bundle file of n realistic records (sessions of
// statements and results), made once per process and size.
//
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
	key, err := audit.LoadOrCreateHostKey(dir, "bench")
	if err != nil {
		b.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{HostID: "bench", Key: key, NoSync: true, CheckpointInterval: time.Hour})
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
				r := evidencetest.BenchRecord(p*per + i)
				sess := "sess-" + strconv.Itoa(p) + "-" + strconv.Itoa(i/20)
				switch i % 20 {
				case 0:
					r.Kind, r.Statement, r.Decision = audit.KindSessionStart, nil, nil
				case 19:
					r.Kind, r.Statement, r.Decision, r.Bytes = audit.KindSessionEnd, nil, nil, &audit.Bytes{Up: 1000, Down: 20000}
				default:
					if i%2 == 0 {
						r.Kind, r.Decision, r.Detail = audit.KindResult, nil, map[string]string{"tag": "DELETE 1"}
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
	ex, err := evidence.PrepareExport(ctx, l, evidence.ExportOptions{Tool: "bench"})
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
	key, err := audit.LoadOrCreateHostKey(filepath.Dir(path), "bench")
	if err != nil {
		b.Fatal(err)
	}
	v, err := audit.ParseVerifierKey(key.VerifierKey)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var rep *evidence.VerifyReport
	cpu0 := evidencetest.CPUTime()
	for b.Loop() {
		rep, err = evidence.Verify(bytes.NewReader(data), evidence.VerifyOptions{Key: v})
		if err != nil {
			b.Fatalf("%v: %v", err, rep.Failures)
		}
	}
	// On a shared machine wall-clock throughput depends on the load;
	// records per CPU-second do not (2 idle cores give about twice).
	b.ReportMetric(float64(rep.Records)*float64(b.N)/(evidencetest.CPUTime()-cpu0).Seconds(), "rec/cpu-s")
	b.ReportMetric(float64(rep.Records)*float64(b.N)/b.Elapsed().Seconds(), "rec/s")
	b.ReportMetric(float64(len(data))/float64(rep.Records), "bytes/rec")
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == evidence.BundleRecords {
			// What the bundle adds to the records themselves (proofs,
			// checkpoints, manifest, tar headers).
			b.ReportMetric(float64(int64(len(data))-h.Size)/float64(rep.Records), "overhead-bytes/rec")
			b.ReportMetric(float64(h.Size)/float64(rep.Records), "record-bytes/rec")
		}
	}
}
