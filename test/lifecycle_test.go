// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/redirect"
)

// TestFailClosedRestartUninstall kills the daemon with SIGKILL: the pinned
// programs keep redirecting, so intercepted connects now fail instead of
// bypassing enforcement. A restart reuses the pinned state and interception
// works again; `tollgate uninstall` makes connections direct again.
func TestFailClosedRestartUninstall(t *testing.T) {
	s := newInterceptSetup(t)
	res, _ := runChild(t, s.cgroup, "tcp", s.echo4.String(), "before")
	if r := res[0]; r.Err != "" || r.Reply != "echo4\nbefore" {
		t.Fatalf("before kill: %+v", r)
	}

	linksBefore := pinnedLinkIDs(t, s.d.cfg.PinPath)
	s.d.kill()
	if !redirect.Loaded(s.d.cfg.PinPath) {
		t.Fatal("links not pinned after SIGKILL")
	}
	res, _ = runChild(t, s.cgroup, "tcp", s.echo4.String(), "while down")
	if r := res[0]; r.Err == "" || strings.Contains(r.Reply, "while down") {
		t.Fatalf("daemon down but the connection went through: %+v", r)
	}
	// Processes outside the workload are not affected.
	res, _ = runChild(t, "", "tcp", s.echo4.String(), "outside")
	if r := res[0]; r.Err != "" || r.Reply != "echo4\noutside" {
		t.Fatalf("outside workload while daemon down: %+v", r)
	}

	s.d.start()
	// The restart swapped the programs inside the pinned cgroup links
	// (link.Update) instead of attaching new ones: no window without
	// interception. Tracing links cannot be updated; they are replaced,
	// the new one attached before the old one's pin goes.
	after := pinnedLinkIDs(t, s.d.cfg.PinPath)
	for _, name := range []string{"connect4", "connect6", "sockops", "connect_unix", "getpeername_unix"} {
		if after[name] != linksBefore[name] {
			t.Fatalf("pinned link %s changed across restart: %v → %v", name, linksBefore, after)
		}
	}
	res, pid := runChild(t, s.cgroup, "tcp", s.echo4.String(), "after restart")
	if r := res[0]; r.Err != "" || r.Reply != "echo4\nafter restart" {
		t.Fatalf("after restart: %+v", r)
	}
	waitFor(t, "session after restart", func() bool {
		starts, _ := sessionRecords(s.d.records())
		for _, st := range starts {
			if st.Process != nil && int(st.Process.Pid) == pid {
				return true
			}
		}
		return false
	})
	// The log continued across the crash: seq is contiguous and both
	// daemon starts are in it.
	recs := s.d.records()
	starts := 0
	for i, r := range recs {
		if r.Seq != uint64(i) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		if r.Kind == audit.KindAgentStart {
			starts++
		}
	}
	if starts != 2 {
		t.Fatalf("%d agent.start records, want 2", starts)
	}

	s.d.stop()
	out, err := runTollgate("uninstall", "--config", s.d.cfgPath)
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if redirect.Loaded(s.d.cfg.PinPath) {
		t.Fatal("links still pinned after uninstall")
	}
	if _, err := os.Stat(s.d.cfg.PinPath); !os.IsNotExist(err) {
		t.Fatalf("pin path still present: %v", err)
	}
	res, _ = runChild(t, s.cgroup, "tcp", s.echo4.String(), "after uninstall")
	if r := res[0]; r.Err != "" || r.Remote != s.echo4.String() || r.Reply != "echo4\nafter uninstall" {
		t.Fatalf("after uninstall: %+v", r)
	}
	// Reading the log with the daemon stopped works from the state dir.
	if n := len(s.d.records()); n < 6 {
		t.Fatalf("offline read returned %d records", n)
	}
}

// pinnedLinkIDs returns the kernel ids of the pinned links by pin name.
func pinnedLinkIDs(t testing.TB, pin string) map[string]link.ID {
	t.Helper()
	ids := map[string]link.ID{}
	entries, err := os.ReadDir(filepath.Join(pin, "links"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		l, err := link.LoadPinnedLink(filepath.Join(pin, "links", e.Name()), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids[e.Name()] = info.ID
	}
	want := 5 // connect4, connect6, sockops, cgroup_mkdir, cgroup_rmdir
	if redirect.UnixSupported() {
		want += 2 // connect_unix, getpeername_unix
	}
	if len(ids) != want {
		t.Fatalf("pinned links: %v, want %d", ids, want)
	}
	return ids
}

// TestConcurrentSessions runs 200 concurrent intercepted connections: each
// carries its own bytes and gets its own records.
func TestConcurrentSessions(t *testing.T) {
	s := newInterceptSetup(t)
	const n, size = 200, 64 << 10
	res, pid := runChild(t, s.cgroup, "many", s.echo4.String(), fmt.Sprint(n), fmt.Sprint(size))
	if len(res) != n {
		t.Fatalf("%d results", len(res))
	}
	clientPorts := map[string]bool{}
	for i, r := range res {
		if r.Err != "" {
			t.Fatalf("conn %d: %s", i, r.Err)
		}
		clientPorts[r.Local] = true
	}
	var starts, ends map[string]*audit.Record
	waitFor(t, "all session records", func() bool {
		starts, ends = sessionRecords(s.d.records())
		got := 0
		for id, st := range starts {
			if st.Process != nil && int(st.Process.Pid) == pid && ends[id] != nil {
				got++
			}
		}
		return got == n
	})
	for id, st := range starts {
		if int(st.Process.Pid) != pid {
			continue
		}
		if !clientPorts[st.Client] {
			t.Errorf("session %s from %s is not one of the client's connections", id, st.Client)
		}
		delete(clientPorts, st.Client)
		e := ends[id]
		if e.Bytes.Up != size || e.Bytes.Down != uint64(size+len("echo4\n")) {
			t.Errorf("session %s bytes %+v", id, e.Bytes)
		}
	}
	if len(clientPorts) != 0 {
		t.Errorf("%d connections without their own record", len(clientPorts))
	}
}

// TestBadConfig checks that the daemon refuses bad configs with a message
// that names the problem.
func TestBadConfig(t *testing.T) {
	requireRoot(t)
	cases := []struct {
		name, workloads, targets, extra, want string
	}{
		{"unknown key", "  - name: w\n    uid: 1000", "  - name: t\n    protocol: tcp\n    match: [\"127.0.0.2:1\"]", "listen_adress: 127.0.0.1\n", `unknown key "listen_adress"`},
		{"bad cidr", "  - name: w\n    uid: 1000", "  - name: t\n    protocol: tcp\n    match: [\"10.0.0.0/33:5432\"]", "", "10.0.0.0/33"},
		{"missing cgroup", "  - name: w\n    cgroup: /tollgate-test-does-not-exist", "  - name: t\n    protocol: tcp\n    match: [\"127.0.0.2:1\"]", "", "does not exist"},
		{"duplicate target", "  - name: w\n    uid: 1000", "  - name: t\n    protocol: tcp\n    match: [\"127.0.0.2:1\"]\n  - name: t\n    protocol: tcp\n    match: [\"127.0.0.2:2\"]", "", "duplicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newDaemonConfig(t, tc.workloads, tc.targets)
			p := writeConfig(t, cfg)
			if tc.extra != "" {
				b, _ := os.ReadFile(p)
				os.WriteFile(p, append(b, tc.extra...), 0o600)
			}
			out, err := runTollgate("daemon", "--config", p)
			if err == nil {
				t.Fatalf("daemon accepted a bad config:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("message does not mention %q:\n%s", tc.want, out)
			}
			if _, err := os.Stat(filepath.Join(cfg.StateDir, "audit.db")); err == nil && tc.name != "missing cgroup" {
				t.Logf("state created before config was rejected")
			}
		})
	}
}

// TestSquatterGetsNothing kills the daemon and lets an unprivileged-style
// listener (no SO_MARK) take the proxy's port: intercepted connects must be
// refused rather than delivered to it.
func TestSquatterGetsNothing(t *testing.T) {
	s := newInterceptSetup(t)
	s.d.kill()
	ln, err := net.Listen("tcp4", s.listener)
	if err != nil {
		t.Fatalf("squatting %s: %v", s.listener, err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			got <- c
		}
	}()
	res, _ := runChild(t, s.cgroup, "tcp", s.echo4.String(), "secret")
	if r := res[0]; r.Err == "" {
		t.Fatalf("connect succeeded while the port was squatted: %+v", r)
	}
	select {
	case c := <-got:
		c.Close()
		t.Fatal("the squatter received the redirected connection")
	case <-time.After(200 * time.Millisecond):
	}
	// A restart takes the port back only once the squatter is gone.
	ln.Close()
	s.d.start()
	if c := s.d.status().Counters.NotOwned; c == 0 {
		t.Fatalf("not-owned counter %d", c)
	}
	res, _ = runChild(t, s.cgroup, "tcp", s.echo4.String(), "back")
	if r := res[0]; r.Err != "" || r.Reply != "echo4\nback" {
		t.Fatalf("after restart: %+v", r)
	}
}
