// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The benchmarks compare, in the same run, a connection intercepted by the
// daemon with a direct one to the same loopback service. Run them with
// `make bench`; the figures go to docs/BENCHMARKS.md.

// benchSetup starts a daemon protecting an echo service and a sink service,
// and moves the benchmark process into the workload cgroup while enabled.
type benchSetup struct {
	d      *daemon
	cgroup string
	echo   *net.TCPAddr // greets, then echoes (protected)
	sink   *net.TCPAddr // reads and discards (protected)
	echoD  *net.TCPAddr // same service, unprotected port
	sinkD  *net.TCPAddr
}

func newBenchSetup(b *testing.B) *benchSetup {
	b.Helper()
	requireRoot(b)
	s := &benchSetup{cgroup: newCgroup(b)}
	s.echo = echoServer(b, "tcp4", "127.0.0.2:0", "echo")
	s.echoD = echoServer(b, "tcp4", "127.0.0.2:0", "echo")
	s.sink = sinkServer(b, "127.0.0.2:0")
	s.sinkD = sinkServer(b, "127.0.0.2:0")
	cfg := newDaemonConfig(b,
		fmt.Sprintf("  - name: bench\n    cgroup: %s", s.cgroup),
		fmt.Sprintf("  - name: echo\n    protocol: tcp\n    match: [\"127.0.0.2:%d\", \"127.0.0.2:%d\"]", s.echo.Port, s.sink.Port))
	s.d = startDaemon(b, cfg)
	return s
}

// enter moves this process into the workload cgroup so that the sockets it
// creates are intercepted; the returned func moves it back.
func (s *benchSetup) enter(b *testing.B) func() {
	b.Helper()
	return enterCgroup(b, s.cgroup)
}

// enterCgroup moves the test process into cgroup (so its own connects are
// a workload's) and returns the function that moves it back.
func enterCgroup(b testing.TB, cgroup string) func() {
	b.Helper()
	orig, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		b.Fatal(err)
	}
	var origPath string
	for _, l := range strings.Split(string(orig), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			origPath = p
		}
	}
	root := cgroup2Root(b)
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(root, cgroup, "cgroup.procs"), pid, 0); err != nil {
		b.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(filepath.Join(root, origPath, "cgroup.procs"), pid, 0); err != nil {
			b.Errorf("moving back to %s: %v", origPath, err)
		}
	}
}

func sinkServer(b testing.TB, addr string) *net.TCPAddr {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d\n", n)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// BenchmarkConnect measures connect() alone and connect plus the service's
// first byte, intercepted vs direct. connect() returns once the proxy's
// listener accepted in the kernel; the first byte additionally includes the
// origin lookup, the durable session.start record and the upstream dial.
func BenchmarkConnect(b *testing.B) {
	s := newBenchSetup(b)
	for _, tc := range []struct {
		name string
		addr *net.TCPAddr
	}{{"direct", s.echoD}, {"intercepted", s.echo}} {
		b.Run(tc.name, func(b *testing.B) {
			leave := s.enter(b)
			defer leave()
			var connect, first []time.Duration
			buf := make([]byte, 5)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				c, err := net.Dial("tcp4", tc.addr.String())
				t1 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				c.Close()
				connect = append(connect, t1.Sub(t0))
				first = append(first, t2.Sub(t0))
			}
			b.ReportMetric(float64(pct(connect, 50).Nanoseconds())/1e3, "connect-p50-µs")
			b.ReportMetric(float64(pct(connect, 99).Nanoseconds())/1e3, "connect-p99-µs")
			b.ReportMetric(float64(pct(first, 50).Nanoseconds())/1e3, "firstbyte-p50-µs")
			b.ReportMetric(float64(pct(first, 99).Nanoseconds())/1e3, "firstbyte-p99-µs")
		})
	}
}

// BenchmarkRelayThroughput sends 256 MiB per iteration through one
// connection, intercepted vs direct.
func BenchmarkRelayThroughput(b *testing.B) {
	s := newBenchSetup(b)
	const size = 256 << 20
	chunk := make([]byte, 256<<10)
	for _, tc := range []struct {
		name string
		addr *net.TCPAddr
	}{{"direct", s.sinkD}, {"intercepted", s.sink}} {
		b.Run(tc.name, func(b *testing.B) {
			leave := s.enter(b)
			defer leave()
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				c, err := net.Dial("tcp4", tc.addr.String())
				if err != nil {
					b.Fatal(err)
				}
				for sent := 0; sent < size; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				c.(*net.TCPConn).CloseWrite()
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if err != nil || strings.TrimSpace(line) != strconv.Itoa(size) {
					b.Fatalf("sink got %q, %v", line, err)
				}
			}
		})
	}
}

// BenchmarkIdleConnectionRSS opens 1000 idle intercepted connections and
// reports the daemon's resident memory per connection.
func BenchmarkIdleConnectionRSS(b *testing.B) {
	s := newBenchSetup(b)
	const n = 1000
	for i := 0; i < b.N; i++ {
		leave := s.enter(b)
		before := rss(b, s.d.cmd.Process.Pid)
		conns := make([]net.Conn, 0, n)
		buf := make([]byte, 5)
		for j := 0; j < n; j++ {
			c, err := net.Dial("tcp4", s.echo.String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		after := rss(b, s.d.cmd.Process.Pid)
		for _, c := range conns {
			c.Close()
		}
		leave()
		b.ReportMetric(float64(after-before)/n/1024, "KiB-rss/conn")
		b.ReportMetric(float64(after)/(1<<20), "MiB-rss-total")
	}
}

func rss(b *testing.B, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}
