// SPDX-License-Identifier: Apache-2.0

package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDiskFullRefusesSessions puts state_dir on a small tmpfs and fills it:
// new sessions are refused (fail closed), no acknowledged record is lost,
// the daemon stays up, and it recovers by itself when space returns.
func TestDiskFullRefusesSessions(t *testing.T) {
	s := &interceptSetup{}
	requireRoot(t)
	s.cgroup = newCgroup(t)
	s.echo4 = echoServer(t, "tcp4", "127.0.0.2:0", "echo4")

	mnt := t.TempDir()
	// 16 MiB: the audit journal (8 MiB, preallocated) and the log file.
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })

	cfg := newDaemonConfig(t,
		fmt.Sprintf("  - name: test-workload\n    cgroup: %s", s.cgroup),
		fmt.Sprintf("  - name: echo\n    protocol: tcp\n    match: [\"127.0.0.2:%d\"]", s.echo4.Port))
	cfg.StateDir = filepath.Join(mnt, "state")
	s.d = startDaemon(t, cfg)

	res, _ := runChild(t, s.cgroup, "tcp", s.echo4.String(), "before")
	if r := res[0]; r.Err != "" || r.Reply != "echo4\nbefore" {
		t.Fatalf("before: %+v", r)
	}

	// Fill the file system.
	ballast := filepath.Join(mnt, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	// Sessions go on while bbolt has free pages; once a commit needs
	// space, sessions are refused. Every session the client completed
	// must be in the log.
	completed := map[int]bool{}
	refused := false
	for i := 0; i < 3000 && !refused; i++ {
		msg := fmt.Sprintf("full-%d", i)
		res, pid := runChild(t, s.cgroup, "tcp", s.echo4.String(), msg)
		r := res[0]
		switch {
		case r.Reply == "echo4\n"+msg:
			completed[pid] = true
		case strings.Contains(r.Reply, msg):
			t.Fatalf("partial relay while the log is full: %+v", r)
		default:
			refused = true
		}
	}
	if !refused {
		t.Fatal("sessions never refused on a full disk")
	}
	st := s.d.status()
	if st.Log.Healthy || st.Refused == 0 {
		t.Fatalf("status after refusal: healthy=%v refused=%d error=%q", st.Log.Healthy, st.Refused, st.Log.Error)
	}

	// Space returns: the daemon recovers by itself.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	res, pid := runChild(t, s.cgroup, "tcp", s.echo4.String(), "after")
	if r := res[0]; r.Err != "" || r.Reply != "echo4\nafter" {
		t.Fatalf("after space returned: %+v\n%s", r, s.d.stderr.String())
	}
	completed[pid] = true

	waitFor(t, "all completed sessions recorded", func() bool {
		starts, ends := sessionRecords(s.d.records())
		seen := map[int]bool{}
		for id, r := range starts {
			if ends[id] != nil && r.Process != nil {
				seen[int(r.Process.Pid)] = true
			}
		}
		for pid := range completed {
			if !seen[pid] {
				return false
			}
		}
		return true
	})
	for i, r := range s.d.records() {
		if r.Seq != uint64(i) {
			t.Fatalf("record %d has seq %d: gap", i, r.Seq)
		}
	}
	if !s.d.status().Log.Healthy {
		t.Fatal("log still unhealthy after recovery")
	}
	// What the journal held while the log file could not take it is
	// stored once it can.
	waitFor(t, "the journal's records stored in the log file", func() bool { return s.d.status().Log.Unstored == 0 })
}
