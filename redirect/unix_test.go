// SPDX-License-Identifier: Apache-2.0

package redirect

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnixPeerCookie checks the sock_diag walk the daemon uses to find an
// origin: from the accepted end of a real connection to the cookie of the
// client's socket, which is what the program keyed the origin by.
func TestUnixPeerCookie(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := 0; i < 3; i++ {
		client, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		want := socketCookie(t, client)
		got, err := unixPeerCookie(server)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || got == 0 {
			t.Errorf("peer cookie %d, want the client's %d", got, want)
		}
		if own := socketCookie(t, server); got == own {
			t.Errorf("peer cookie %d is the accepted socket's own", got)
		}
		client.Close()
		server.Close()
	}
}

func socketCookie(t *testing.T, c *net.UnixConn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v uint64
	var gerr error
	rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestUnixPathKey checks the map key of a socket path: its bytes then
// zeros, as the program reads sun_path; unclean or relative paths, which
// the program could never match, are refused.
func TestUnixPathKey(t *testing.T) {
	k, err := unixPath("/run/pg/.s.PGSQL.5432")
	if err != nil {
		t.Fatal(err)
	}
	if k.String() != "/run/pg/.s.PGSQL.5432" || k.Path[len("/run/pg/.s.PGSQL.5432")] != 0 {
		t.Errorf("key %q", k.String())
	}
	for _, bad := range []string{"", "run/pg/s", "/run//pg/s", "/run/pg/", "/" + strings.Repeat("x", UnixPathMax), "/a\x00b"} {
		if _, err := unixPath(bad); err == nil {
			t.Errorf("unixPath(%q) accepted", bad)
		}
	}
	if _, err := unixPath("/" + strings.Repeat("x", UnixPathMax-1)); err != nil {
		t.Errorf("a path of %d bytes: %v", UnixPathMax, err)
	}
}
