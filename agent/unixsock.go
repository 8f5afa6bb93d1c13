// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/redirect"
)

// UnixSocketDir is the directory, next to the API socket, that holds the
// daemon's socket for each target protecting a unix socket. The programs
// rewrite a workload's connect to the target's socket path into this
// directory, so the workload must be able to reach it: the directory is
// 0755 and each socket 0666. A process that dials one of them directly (not
// redirected) has no origin and is closed unanswered.
const UnixSocketDir = "unix"

// ErrUnixSocketPath means a target's socket in UnixSocketDir would be too
// long for a sockaddr_un.
var ErrUnixSocketPath = errors.New("socket path too long")

// ErrUnsafeUnixDir means the directory of the target sockets, or its
// parent, could be changed by someone other than the daemon's user: they
// could replace a target socket (while the daemon is down, say) and receive
// the connections the programs redirect to it.
var ErrUnsafeUnixDir = errors.New("unsafe unix socket directory")

// ErrPeerMismatch means the kernel's origin of a unix connection and the
// socket's own peer credentials name different processes.
var ErrPeerMismatch = errors.New("origin and peer credentials disagree")

// unixSocketDir is where the target sockets of a config live.
func unixSocketDir(cfg policy.Config) string {
	return filepath.Join(filepath.Dir(cfg.APISocket), UnixSocketDir)
}

// syncUnixListener opens the target's unix socket when it protects socket
// paths and closes it when it no longer does. Caller holds a.mu.
func (a *Agent) syncUnixListener(ts *targetState, dir string) error {
	if len(ts.sockets) == 0 {
		a.closeUnixListener(ts)
		return nil
	}
	if ts.uln != nil {
		return nil
	}
	path := filepath.Join(dir, ts.cfg.Name+".sock")
	if len(path) > redirect.UnixPathMax {
		return fmt.Errorf("unix socket %s: %w (at most %d bytes; shorten the target name or api_socket's directory)",
			path, ErrUnixSocketPath, redirect.UnixPathMax)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("unix socket dir: %w", err)
	}
	if err := checkUnixDir(dir); err != nil {
		return err
	}
	// The service's umask would narrow MkdirAll's mode; the workloads
	// must traverse the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("unix socket dir: %w", err)
	}
	// The socket appears under its final name with its final mode:
	// made in a private directory, then renamed into place.
	tmpDir, err := os.MkdirTemp(dir, ".sock-")
	if err != nil {
		return fmt.Errorf("unix socket: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return fmt.Errorf("unix socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	// Any workload's uid must be able to connect: the kernel checks the
	// rewritten path's permissions, not the one the client named.
	if err := os.Chmod(tmp, 0o666); err != nil {
		ln.Close()
		return fmt.Errorf("unix socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return fmt.Errorf("unix socket: %w", err)
	}
	ts.uln, ts.usock = ln, path
	return nil
}

// checkUnixDir checks that dir is a directory of the daemon's user (not a
// symlink) and that its parent is the daemon's or sticky, so that nobody
// else can put a socket of their own where the programs send workloads.
func checkUnixDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("unix socket dir: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory: %w", dir, ErrUnsafeUnixDir)
	case !ok || int(sys.Uid) != os.Geteuid():
		return fmt.Errorf("%s is not owned by the daemon's user (remove it and restart): %w", dir, ErrUnsafeUnixDir)
	}
	parent := filepath.Dir(dir)
	pst, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("unix socket dir: %w", err)
	}
	psys, ok := pst.Sys().(*syscall.Stat_t)
	if !ok || int(psys.Uid) != os.Geteuid() && pst.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("%s is not owned by the daemon's user and not sticky: %w", parent, ErrUnsafeUnixDir)
	}
	if pst.Mode().Perm()&0o022 != 0 && pst.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("%s is writable by group or others: %w", parent, ErrUnsafeUnixDir)
	}
	return nil
}

// closeUnixListener closes the target's unix socket and removes its name.
// Caller holds a.mu.
func (a *Agent) closeUnixListener(ts *targetState) {
	if ts.uln == nil {
		return
	}
	ts.uln.Close()
	_ = os.Remove(ts.usock)
	ts.uln, ts.usock, ts.ulnAccepting = nil, "", false
}

// unixTargets are the protected socket paths of every target, for the
// programs. Caller holds a.mu.
func (a *Agent) unixTargets() []redirect.UnixTarget {
	var out []redirect.UnixTarget
	for _, ts := range a.targets {
		if ts.uln == nil {
			continue
		}
		for _, p := range ts.sockets {
			out = append(out, redirect.UnixTarget{ID: ts.id, Path: p, Listen: ts.usock})
		}
	}
	return out
}

func (a *Agent) acceptLoopUnix(ts *targetState, ln *net.UnixListener) {
	a.serveListener(ts, func() (net.Conn, error) { return ln.AcceptUnix() },
		func(c net.Conn) { a.handleUnix(ts, c.(*net.UnixConn)) })
}

// handleUnix serves one connection accepted on a target's unix socket: the
// kernel's origin says who connected and to which path; SO_PEERCRED, taken
// by the kernel at the same connect, must name the same process.
func (a *Agent) handleUnix(listenerTarget *targetState, c *net.UnixConn) {
	origin, err := a.redir.LookupUnix(c)
	if err == nil {
		err = checkPeer(c, origin)
	}
	if err != nil {
		a.lookupMiss.Add(1)
		if errors.Is(err, redirect.ErrNoOrigin) && listenerTarget.cfg.Protocol == policy.ProtocolPostgres {
			// A cancel request may come from a client that knows the
			// daemon's socket; only tollgate's own keys are served.
			a.servePostgresCancel(listenerTarget, c, "unix")
			return
		}
		a.log.Warn("closing unix connection without origin", "target", listenerTarget.cfg.Name, "error", err)
		c.Close()
		return
	}
	a.mu.Lock()
	ts := a.byID[origin.TargetID]
	protected := ts != nil && slices.Contains(ts.sockets, origin.Path)
	a.mu.Unlock()
	if ts == nil || ts != listenerTarget || !protected || ts.cfg.Protocol != policy.ProtocolPostgres {
		a.refused.Add(1)
		a.log.Warn("closing unix connection for an unknown target or path", "target_id", origin.TargetID, "path", origin.Path)
		c.Close()
		return
	}
	a.handlePostgres(ts, c, origin, netip.AddrPort{}, origin.Path, "unix")
}

// checkPeer compares the origin with the socket's peer credentials. Both
// are the kernel's, taken at the same connect; a difference means the
// origin belongs to another connection, and the connection is refused
// rather than attributed to the wrong process.
func checkPeer(c *net.UnixConn, o redirect.Origin) error {
	cred, err := unixPeerCred(c)
	if err != nil {
		return err
	}
	if cred.PID != o.Process.PID {
		return fmt.Errorf("%w: origin pid %d, peer pid %d", ErrPeerMismatch, o.Process.PID, cred.PID)
	}
	return nil
}
