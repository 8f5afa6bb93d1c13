// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// BenchmarkSSH compares unmodified OpenSSH clients direct to a real sshd
// and through tollgate, in the same run, alternating: the round trip of
// `ssh target true` (connect, both handshakes, certificate login, exec),
// scp of a file (sftp since OpenSSH 9) with the daemon's CPU per MiB, and
// the daemon's memory per open session with many sessions at once.
//
// TOLLGATE_BENCH_SSH_MIB sets the file size (default 1024),
// TOLLGATE_BENCH_SSH_ROUNDS the scp rounds each way (default 5),
// TOLLGATE_BENCH_SSH_CIPHER a cipher scp asks for with -c on both paths
// (default none: OpenSSH's own preference),
// TOLLGATE_BENCH_SSH_TARGET_CIPHERS the target's ciphers, comma-separated
// (default none: what tollgate offers by default), and
// TOLLGATE_BENCH_SSH_SESSIONS the concurrent sessions (default 200).
func BenchmarkSSH(b *testing.B) {
	var ciphers []string
	if v := os.Getenv("TOLLGATE_BENCH_SSH_TARGET_CIPHERS"); v != "" {
		ciphers = strings.Split(v, ",")
	}
	s := newSSHSetupWith(b, true, ciphers)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	port := strconv.Itoa(s.target.port)
	pid := s.d.cmd.Process.Pid

	// Round trips: 5 alternating rounds of 6 each way.
	var direct, through []time.Duration
	for round := 0; round < 5; round++ {
		for _, via := range []bool{false, true} {
			for i := 0; i < 6; i++ {
				start := time.Now()
				_, errOut, err := s.client(b, ctx, via, "", "ssh", "-p", port, "-o", "BatchMode=yes", "root@127.0.0.2", "true")
				d := time.Since(start)
				if err != nil {
					b.Fatalf("ssh true (through=%v): %v\n%s", via, err, errOut)
				}
				if via {
					through = append(through, d)
				} else {
					direct = append(direct, d)
				}
			}
		}
	}
	slices.Sort(direct)
	slices.Sort(through)
	dMed, tMed := direct[len(direct)/2], through[len(through)/2]
	b.ReportMetric(float64(dMed.Microseconds())/1000, "direct-true-ms")
	b.ReportMetric(float64(tMed.Microseconds())/1000, "through-true-ms")
	b.ReportMetric(float64((tMed-dMed).Microseconds())/1000, "added-true-ms")
	b.Logf("ssh true: direct %v, through %v (+%v)", dMed, tMed, tMed-dMed)

	// scp: alternating rounds, medians; the daemon's CPU over the
	// through runs.
	mib := 1024
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_BENCH_SSH_MIB")); err == nil && v > 0 {
		mib = v
	}
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_BENCH_SSH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	scpArgs := []string{"-q", "-P", port}
	if c := os.Getenv("TOLLGATE_BENCH_SSH_CIPHER"); c != "" {
		scpArgs = append(scpArgs, "-c", c)
	}
	f, err := os.Create(filepath.Join(s.home, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		rand.Read(chunk)
		f.Write(chunk)
	}
	f.Close()
	var dRates, tRates []float64
	var cpu time.Duration
	for round := 0; round < rounds; round++ {
		for _, via := range []bool{false, true} {
			dst := filepath.Join(s.work, "big-copy.bin")
			before := procCPU(b, pid)
			start := time.Now()
			_, errOut, err := s.client(b, ctx, via, "", "scp", slices.Concat(scpArgs, []string{"/root/big.bin", "root@127.0.0.2:" + dst})...)
			el := time.Since(start)
			if err != nil {
				b.Fatalf("scp (through=%v): %v\n%s", via, err, errOut)
			}
			st, err := os.Stat(dst)
			if err != nil || st.Size() != int64(mib)<<20 {
				b.Fatalf("scp copy: %v, size %d", err, st.Size())
			}
			os.Remove(dst)
			rate := float64(mib) / el.Seconds()
			if via {
				tRates = append(tRates, rate)
				cpu += procCPU(b, pid) - before
			} else {
				dRates = append(dRates, rate)
			}
		}
	}
	slices.Sort(dRates)
	slices.Sort(tRates)
	dRate, tRate := dRates[rounds/2], tRates[rounds/2]
	cpuPerMiB := float64(cpu.Microseconds()) / float64(rounds*mib)
	b.ReportMetric(dRate, "direct-scp-MiB/s")
	b.ReportMetric(tRate, "through-scp-MiB/s")
	b.ReportMetric(tRate/dRate, "scp-ratio")
	b.ReportMetric(cpuPerMiB, "daemon-cpu-us/MiB")
	b.Logf("scp %d MiB, %d rounds: direct %.0f MiB/s %.0f, through %.0f MiB/s %.0f (%.2f), daemon %.0f µs CPU/MiB",
		mib, rounds, dRate, dRates, tRate, tRates, tRate/dRate, cpuPerMiB)

	// Concurrent sessions: each runs a command that waits; once all are
	// open, the daemon's RSS over its idle RSS is divided among them.
	n := 200
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_BENCH_SSH_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	idle := rss(b, pid)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	opened := func() int {
		k := 0
		for _, r := range s.d.records() {
			if r.Kind == audit.KindChannelRequest && r.Statement != nil && r.Statement.Text == "sleep 120" {
				k++
			}
		}
		return k
	}
	// In waves of 10, each open before the next starts: the figure is
	// memory per open session, not the cost of a connect storm (which
	// sshd's MaxStartups and a 2-core machine would throttle anyway).
	open := 0
	for started := 0; started < n; {
		wave := min(10, n-started)
		for i := 0; i < wave; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errOut, err := s.client(b, ctx, true, "", "ssh", "-p", port, "-o", "BatchMode=yes", "root@127.0.0.2", "sleep 120")
				if err != nil {
					errs <- fmt.Errorf("%v: %s", err, strings.TrimSpace(errOut))
				}
			}()
		}
		started += wave
		deadline := time.Now().Add(time.Minute)
		for open = opened(); open < started && time.Now().Before(deadline); open = opened() {
			time.Sleep(200 * time.Millisecond)
		}
	}
	busy := rss(b, pid)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("concurrent session: %v", err)
	}
	if open < n {
		b.Fatalf("only %d of %d sessions were open at once", open, n)
	}
	b.ReportMetric(float64(busy-idle)/float64(n)/1024, "KiB/session")
	b.Logf("ssh true: direct %v, through %v (+%v); scp %d MiB: direct %.0f MiB/s, through %.0f MiB/s (%.2f), daemon %.0f µs CPU/MiB; %d sessions: %.0f KiB each",
		dMed, tMed, tMed-dMed, mib, dRate, tRate, tRate/dRate, cpuPerMiB, n, float64(busy-idle)/float64(n)/1024)
}
