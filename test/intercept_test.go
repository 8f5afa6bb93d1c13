// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
)

// interceptSetup starts an echo service on the protected loopback
// addresses, a workload cgroup, and a daemon protecting the service.
type interceptSetup struct {
	d        *daemon
	cgroup   string
	echo4    *net.TCPAddr // 127.0.0.2:port
	echo6    *net.TCPAddr // [::1]:port
	listener string       // the target's proxy listener, 127.0.0.1:port
}

func newInterceptSetup(t *testing.T) *interceptSetup {
	t.Helper()
	requireRoot(t)
	s := &interceptSetup{cgroup: newCgroup(t)}
	s.echo4 = echoServer(t, "tcp4", "127.0.0.2:0", "echo4")
	s.echo6 = echoServer(t, "tcp6", "[::1]:0", "echo6")
	cfg := newDaemonConfig(t,
		fmt.Sprintf("  - name: test-workload\n    cgroup: %s", s.cgroup),
		fmt.Sprintf("  - name: echo\n    protocol: tcp\n    match: [\"127.0.0.2:%d\", \"[::1]:%d\"]", s.echo4.Port, s.echo6.Port))
	s.d = startDaemon(t, cfg)
	st := s.d.status()
	if len(st.Targets) != 1 || len(st.Targets[0].Listen) == 0 {
		t.Fatalf("status targets: %+v", st.Targets)
	}
	s.listener = st.Targets[0].Listen[0]
	return s
}

// TestInterceptTCP runs an unmodified client in the workload cgroup
// against the protected service over IPv4, IPv6 and a v4-mapped address
// from an AF_INET6 socket; each is carried through the daemon and recorded
// with the original destination and the client's identity.
func TestInterceptTCP(t *testing.T) {
	s := newInterceptSetup(t)
	cases := []struct {
		name, mode, addr, greeting string
		dst                        string
	}{
		{"ipv4", "tcp", s.echo4.String(), "echo4", s.echo4.String()},
		{"ipv6", "tcp", s.echo6.String(), "echo6", s.echo6.String()},
		{"v4mapped", "mapped", s.echo4.String(), "echo4", s.echo4.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := "hello through tollgate " + tc.name
			res, pid := runChild(t, s.cgroup, tc.mode, tc.addr, msg)
			r := res[0]
			if r.Err != "" {
				t.Fatalf("client: %s", r.Err)
			}
			if want := tc.greeting + "\n" + msg; r.Reply != want {
				t.Fatalf("reply %q, want %q", r.Reply, want)
			}
			// The client's socket is connected to the proxy, not to the
			// service: that is the proof the connect was redirected.
			if r.Remote == tc.addr || strings.HasSuffix(r.Remote, fmt.Sprintf(":%d", portOf(t, tc.addr))) {
				t.Fatalf("client connected directly to %s: not intercepted", r.Remote)
			}
			var start, end *audit.Record
			waitFor(t, "session records", func() bool {
				starts, ends := sessionRecords(s.d.records())
				for id, st := range starts {
					if st.Process != nil && int(st.Process.Pid) == pid {
						start, end = st, ends[id]
					}
				}
				return start != nil && end != nil
			})
			if start.Dst != tc.dst {
				t.Errorf("recorded dst %q, want %q", start.Dst, tc.dst)
			}
			if start.Target != "echo" {
				t.Errorf("recorded target %q", start.Target)
			}
			p := start.Process
			if p.UID != uint32(os.Getuid()) || p.Comm == "" {
				t.Errorf("recorded process %+v", p)
			}
			if !strings.HasPrefix(os.Args[0], "/") || !strings.HasSuffix(os.Args[0], p.Comm) && !strings.HasPrefix(baseName(os.Args[0]), p.Comm) {
				t.Errorf("recorded comm %q for %s", p.Comm, os.Args[0])
			}
			if p.Cgroup != s.cgroup {
				t.Errorf("recorded cgroup %q, want %q", p.Cgroup, s.cgroup)
			}
			if end.Bytes == nil || end.Bytes.Up != uint64(len(msg)) || end.Bytes.Down != uint64(len(tc.greeting)+1+len(msg)) {
				t.Errorf("recorded bytes %+v", end.Bytes)
			}
			if end.CloseReason == "" || end.DurationNS <= 0 {
				t.Errorf("session end %+v", end)
			}
		})
	}
}

// TestNotIntercepted checks what must go direct: a process outside the
// workload, UDP to a protected port, and a port that is not protected.
func TestNotIntercepted(t *testing.T) {
	s := newInterceptSetup(t)
	before := len(s.d.records())

	// Outside the workload (the test's own cgroup).
	res, _ := runChild(t, "", "tcp", s.echo4.String(), "direct")
	if r := res[0]; r.Err != "" || r.Remote != s.echo4.String() || r.Reply != "echo4\ndirect" {
		t.Fatalf("outside workload: %+v", r)
	}
	// The daemon itself reaches the service: each intercepted session
	// dials it, which TestInterceptTCP proves end to end.

	// UDP to the protected address and port is untouched.
	u := udpEcho(t, s.echo4.String())
	res, _ = runChild(t, s.cgroup, "udp", u.String(), "dgram")
	if r := res[0]; r.Err != "" || r.Remote != u.String() || r.Reply != "udp:dgram" {
		t.Fatalf("udp: %+v", r)
	}
	// A port that is not protected is untouched.
	other := echoServer(t, "tcp4", "127.0.0.2:0", "other")
	res, _ = runChild(t, s.cgroup, "tcp", other.String(), "x")
	if r := res[0]; r.Err != "" || r.Remote != other.String() || r.Reply != "other\nx" {
		t.Fatalf("unprotected port: %+v", r)
	}
	after := s.d.records()
	for _, r := range after[before:] {
		if r.Kind == audit.KindSessionStart {
			t.Fatalf("unexpected session record: %+v", r)
		}
	}
}

// TestOwnSocketsNotRedirected selects the workload by uid 0, so that the
// daemon itself is part of it: its upstream connections carry the mark and
// must not be redirected back into the proxy.
func TestOwnSocketsNotRedirected(t *testing.T) {
	requireRoot(t)
	echo := echoServer(t, "tcp4", "127.0.0.2:0", "echo")
	cfg := newDaemonConfig(t, "  - name: root\n    uid: 0",
		fmt.Sprintf("  - name: echo\n    protocol: tcp\n    match: [\"127.0.0.2:%d\"]", echo.Port))
	d := startDaemon(t, cfg)
	res, _ := runChild(t, "", "tcp", echo.String(), "marked")
	if r := res[0]; r.Err != "" || r.Reply != "echo\nmarked" || r.Remote == echo.String() {
		t.Fatalf("client: %+v", r)
	}
	st := d.status()
	if st.Counters.SkippedMark == 0 {
		t.Fatalf("the daemon's upstream connect was not recognised by its mark: %+v", st.Counters)
	}
	if st.Counters.Redirected != 1 {
		t.Fatalf("redirected %d connects, want exactly 1 (no loop)", st.Counters.Redirected)
	}
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ta.Port
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
