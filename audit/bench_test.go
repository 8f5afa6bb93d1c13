// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkAppend compares the Log's group commit with a baseline that
// writes the same records with bbolt's DB.Batch, for 1, 16 and 256
// concurrent producers. Both use a real file with fsync on. b.N records are
// spread over the producers; each reports records/s and the p50 and p99
// latency of one append, and the CPU time of the process per record.
func BenchmarkAppend(b *testing.B) {
	for _, producers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("impl=log/producers=%d", producers), func(b *testing.B) {
			l, err := Open(filepath.Join(b.TempDir(), "audit.db"), Options{HostID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			benchProducers(b, producers, func(i int) error {
				_, err := l.Append(ctx, benchRecord(i))
				return err
			})
		})
		b.Run(fmt.Sprintf("impl=dbbatch/producers=%d", producers), func(b *testing.B) {
			db := benchBatchDB(b)
			benchProducers(b, producers, func(i int) error {
				return benchBatchAppend(db, benchRecord(i))
			})
		})
	}
}

// benchRecord is a typical statement record (about 450 bytes encoded).
func benchRecord(i int) *Record {
	return &Record{
		V:       SchemaVersion,
		Log:     "tollgate/bench/0123456789abcdef",
		Time:    time.Now().UTC(),
		Kind:    KindStatement,
		Session: "01JDQ4V9S6Y4D4HW0Z8C8D6M1P",
		Target:  "orders-db",
		Dst:     "127.0.0.2:5432",
		Process: &Process{Pid: 4242, UID: 1001, GID: 1001, Comm: "python3",
			Exe: "/usr/bin/python3.11", Cgroup: "/system.slice/nightly.service"},
		Identity: &Identity{Name: "ci-deploy", Method: "oidc", Issuer: "https://issuer.example",
			Subject: "repo:org/app", Groups: []string{"deploy"}},
		Statement: &Statement{Text: "DELETE FROM orders WHERE id = $" + strconv.Itoa(i),
			Fingerprint: "0a42922fab0bd73f", Classes: []string{"delete"}, Tables: []string{"orders"}},
		Decision: &Decision{Action: "allow", Rule: "deploy-writes",
			Policy: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
	}
}

// benchProducers runs b.N appends from the given number of goroutines and
// reports throughput and latency percentiles.
func benchProducers(b *testing.B, producers int, appendOne func(i int) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, producers)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := processCPU(b)
	start := time.Now()
	for p := range producers {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				t0 := time.Now()
				if err := appendOne(i); err != nil {
					b.Error(err)
					return
				}
				lat[p] = append(lat[p], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()

	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(q float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(q*float64(len(all)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rec/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/rec")
}

// processCPU is the user plus system CPU time of this process so far: the
// producers' and the writer's (encoding, bbolt, kernel time of the writes
// and flushes).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchBatchDB creates a bbolt file with the same bucket layout as a Log.
func benchBatchDB(b *testing.B) *bolt.DB {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "batch.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error {
		return initLog(tx, "bench", time.Now())
	}); err != nil {
		b.Fatal(err)
	}
	return db
}

// benchBatchAppend is the DB.Batch baseline: the same record bytes and
// bucket layout, seq from the records bucket's sequence.
func benchBatchAppend(db *bolt.DB, r *Record) error {
	head, tail, err := encodeSplit(r)
	if err != nil {
		return err
	}
	return db.Batch(func(tx *bolt.Tx) error {
		records := tx.Bucket(bucketRecords)
		records.FillPercent = 1.0
		next, err := records.NextSequence()
		if err != nil {
			return err
		}
		seq := next - 1
		data := append(append(append([]byte(nil), head...), strconv.FormatUint(seq, 10)...), tail...)
		if err := records.Put(u64(seq), data); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaSize, u64(next))
	})
}

// BenchmarkPrune measures Log.Prune: b.N typical statement records (about
// 450 bytes each) are appended, then all but the last are pruned. It
// reports records pruned per second, and the bytes bbolt keeps in use per
// pruned record (the leaf hash and its key) against those the record took.
func BenchmarkPrune(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.db"), Options{HostID: "bench", NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	rs := make([]*Record, 0, 1000)
	for i := 0; i < b.N; i += len(rs) {
		rs = rs[:0]
		for j := i; j < min(i+1000, b.N); j++ {
			rs = append(rs, benchRecord(j))
		}
		if err := l.AppendAll(ctx, rs); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Root(l.Size()); err != nil { // everything stored in bbolt
		b.Fatal(err)
	}
	used := func() (records, leaves int) {
		_ = l.view(func(tx *bolt.Tx) error {
			s := tx.Bucket(bucketRecords).Stats()
			records = s.LeafInuse + s.BranchInuse
			if lb := tx.Bucket(bucketLeaves); lb != nil {
				s := lb.Stats()
				leaves = s.LeafInuse + s.BranchInuse
			}
			return nil
		})
		return
	}
	before, _ := used()
	b.ResetTimer()
	n, err := l.Prune(ctx, PruneOptions{Below: l.Size(), Before: time.Now()})
	b.StopTimer()
	if err != nil || n != uint64(b.N-1) {
		b.Fatalf("pruned %d of %d: %v", n, b.N, err)
	}
	after, leaves := used()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	if n > 0 {
		b.ReportMetric(float64(before-after)/float64(n), "freed-B/record")
		b.ReportMetric(float64(leaves)/float64(n), "kept-B/record")
	}
}
