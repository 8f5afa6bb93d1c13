// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/redirect"
)

// peerCred is who is on the other end of an API connection, as the kernel
// saw it when the client connected (SO_PEERCRED): it cannot be forged by
// the client, unlike anything it sends.
type peerCred struct {
	PID uint32
	UID uint32
	GID uint32
}

type peerKey struct{}

// peerConnContext is the API server's ConnContext: it reads the peer's
// credentials once per connection and carries them in the request context.
// A connection whose credentials cannot be read carries none, and calls that
// change state refuse it.
func peerConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	cred, err := unixPeerCred(uc)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// unixPeerCred reads SO_PEERCRED of a unix socket connection.
func unixPeerCred(c *net.UnixConn) (peerCred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return peerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var uc *unix.Ucred
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		uc, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if gerr != nil {
		return peerCred{}, fmt.Errorf("peer credentials: %w", gerr)
	}
	return peerCred{PID: uint32(uc.Pid), UID: uc.Uid, GID: uc.Gid}, nil
}

// peerFrom returns the credentials of the API call's caller.
func peerFrom(ctx context.Context) (peerCred, bool) {
	p, ok := ctx.Value(peerKey{}).(peerCred)
	return p, ok
}

// process describes the caller for records: the kernel's pid, uid and gid,
// completed from /proc while the process is still there (the pid, uid and
// gid stay authoritative; the rest is best effort and may be missing if
// the caller exited).
func (p peerCred) process() *audit.Process {
	pr := &audit.Process{Pid: p.PID, UID: p.UID, GID: p.GID}
	dir := "/proc/" + strconv.FormatUint(uint64(p.PID), 10)
	if exe, err := os.Readlink(dir + "/exe"); err == nil {
		pr.Exe = exe
	}
	if b, err := os.ReadFile(dir + "/comm"); err == nil {
		pr.Comm = strings.TrimSpace(string(b))
	}
	if cg, err := redirect.ProcessCgroup(p.PID); err == nil {
		pr.Cgroup = cg
	}
	return pr
}
