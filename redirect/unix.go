// SPDX-License-Identifier: Apache-2.0

package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// ErrNoUnix means the kernel cannot redirect unix socket connects
// (cgroup/connect_unix and bpf_sock_addr_set_sun_path came in Linux 6.7).
var ErrNoUnix = errors.New("kernel cannot redirect unix sockets (needs Linux 6.7 or later)")

// UnixPathMax is the longest socket path the programs match or rewrite to,
// in bytes: sun_path holds 108, and a path that fills it has no NUL.
const UnixPathMax = 107

// sock_diag for unix sockets (linux/unix_diag.h), which x/sys does not
// define.
const (
	sizeofUnixDiagReq = 24 // struct unix_diag_req
	sizeofUnixDiagMsg = 16 // struct unix_diag_msg
	udiagShowPeer     = 0x4
	unixDiagPeer      = 2
)

// UnixTarget is a protected unix socket path of a target.
type UnixTarget struct {
	// ID identifies the target in origins; it must not be zero.
	ID uint32
	// Path is the server's socket path, absolute and clean, as clients
	// dial it (for example /var/run/postgresql/.s.PGSQL.5432).
	Path string
	// Listen is the daemon's socket a connect to Path is rewritten to.
	Listen string
}

// UnixSupported reports whether the running kernel can redirect unix
// socket connects: it has the kfunc the unix programs call (Linux 6.7).
func UnixSupported() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	_, err = spec.AnyTypeByName("bpf_sock_addr_set_sun_path")
	return err == nil
}

// stubUnixPrograms replaces the unix programs with ones that do nothing and
// load on any kernel, so that an older kernel still gets TCP interception;
// they are not attached.
func stubUnixPrograms(spec *ebpf.CollectionSpec) {
	for _, name := range []string{redirectProgTollgateConnectUnix, redirectProgTollgateGetpeernameUnix} {
		p := spec.Programs[name]
		if p == nil {
			continue
		}
		p.AttachType = ebpf.AttachCGroupInet4Connect
		p.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}
	}
}

// UnixAttached reports whether this redirector redirects unix sockets.
func (r *Redirector) UnixAttached() bool { return r.unix }

// SetUnixTargets replaces the protected socket paths. New entries are
// written before stale ones are removed.
func (r *Redirector) SetUnixTargets(targets []UnixTarget) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(targets) > 0 && !r.unix {
		return fmt.Errorf("set unix targets: %w", ErrNoUnix)
	}
	want := make(map[redirectUnixPath]redirectUnixTarget, len(targets))
	for _, t := range targets {
		if t.ID == 0 {
			return errors.New("set unix targets: zero target id")
		}
		k, err := unixPath(t.Path)
		if err != nil {
			return fmt.Errorf("set unix targets: %w", err)
		}
		l, err := unixPath(t.Listen)
		if err != nil {
			return fmt.Errorf("set unix targets: %w", err)
		}
		if _, dup := want[k]; dup {
			return fmt.Errorf("set unix targets: %s twice", t.Path)
		}
		want[k] = redirectUnixTarget{TargetId: t.ID, ListenLen: uint32(len(t.Listen)), Listen: l.Path}
	}
	if err := syncMap(r.objs.UnixTargets, want); err != nil {
		return fmt.Errorf("set unix targets: %w", err)
	}
	return nil
}

// unixPath is the map key of a socket path: its bytes, zero-filled.
func unixPath(p string) (redirectUnixPath, error) {
	var k redirectUnixPath
	if p == "" || p[0] != '/' || len(p) > UnixPathMax || filepath.Clean(p) != p {
		return k, fmt.Errorf("socket path %q: want an absolute clean path of at most %d bytes", p, UnixPathMax)
	}
	for i := 0; i < len(p); i++ {
		if p[i] == 0 {
			return k, fmt.Errorf("socket path %q: NUL byte", p)
		}
		k.Path[i] = int8(p[i])
	}
	return k, nil
}

func (p *redirectUnixPath) String() string {
	b := make([]byte, 0, len(p.Path))
	for _, c := range p.Path {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// LookupUnix returns and forgets the origin of an accepted unix connection
// of the daemon's: the kernel is asked for the client socket (the peer) and
// its cookie, under which the program left the origin. A connection that
// was not redirected (a process dialled the daemon's socket itself) returns
// ErrNoOrigin; the caller must close it.
func (r *Redirector) LookupUnix(c *net.UnixConn) (Origin, error) {
	cookie, err := unixPeerCookie(c)
	if err != nil {
		return Origin{}, fmt.Errorf("lookup unix peer: %w", err)
	}
	var o redirectUnixOrigin
	if err := r.objs.UnixOrigins.LookupAndDelete(cookie, &o); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Origin{}, fmt.Errorf("lookup unix peer %d: %w", cookie, ErrNoOrigin)
		}
		return Origin{}, fmt.Errorf("lookup unix peer %d: %w", cookie, err)
	}
	out := originFromMeta(&o.Meta)
	out.Family = unix.AF_UNIX
	out.Path = o.Dst.String()
	return out, nil
}

// unixPeerCookie returns the socket cookie of the other end of c, through
// sock_diag: c's inode gives its peer's inode, and that its cookie.
func unixPeerCookie(c *net.UnixConn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("stat socket: %w", serr)
	}
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(nl)
	peer, _, err := unixDiag(nl, uint32(st.Ino), udiagShowPeer)
	if err != nil {
		return 0, err
	}
	if peer == 0 {
		return 0, errors.New("sock_diag: socket has no peer")
	}
	_, cookie, err := unixDiag(nl, peer, 0)
	return cookie, err
}

// unixDiag asks sock_diag about the unix socket with inode ino and returns
// its peer's inode (with UDIAG_SHOW_PEER) and its cookie.
func unixDiag(nl int, ino uint32, show uint32) (peer uint32, cookie uint64, err error) {
	const hdr = unix.SizeofNlMsghdr
	req := make([]byte, hdr+sizeofUnixDiagReq)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], ino) // sequence: the inode asked for
	// struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
	b := req[hdr:]
	b[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(b[4:], ^uint32(0))
	binary.NativeEndian.PutUint32(b[8:], ino)
	binary.NativeEndian.PutUint32(b[12:], show)
	binary.NativeEndian.PutUint32(b[16:], ^uint32(0)) // any cookie
	binary.NativeEndian.PutUint32(b[20:], ^uint32(0))
	if err := unix.Sendto(nl, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, fmt.Errorf("sock_diag: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(nl, buf, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("sock_diag: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, 0, fmt.Errorf("sock_diag: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return 0, 0, fmt.Errorf("sock_diag: inode %d: %w", ino, syscall.Errno(-e))
				}
			}
			return 0, 0, fmt.Errorf("sock_diag: inode %d: error reply", ino)
		case unix.SOCK_DIAG_BY_FAMILY:
		default:
			continue
		}
		// struct unix_diag_msg: family, type, state, pad, ino, cookie[2];
		// then attributes.
		d := m.Data
		if len(d) < sizeofUnixDiagMsg || binary.NativeEndian.Uint32(d[4:]) != ino {
			continue
		}
		cookie = uint64(binary.NativeEndian.Uint32(d[8:])) | uint64(binary.NativeEndian.Uint32(d[12:]))<<32
		for a := d[sizeofUnixDiagMsg:]; len(a) >= 4; {
			l := int(binary.NativeEndian.Uint16(a))
			typ := binary.NativeEndian.Uint16(a[2:])
			if l < 4 || l > len(a) {
				break
			}
			if typ == unixDiagPeer && l >= 8 {
				peer = binary.NativeEndian.Uint32(a[4:])
			}
			al := (l + 3) &^ 3
			if al > len(a) {
				break
			}
			a = a[al:]
		}
		return peer, cookie, nil
	}
	return 0, 0, fmt.Errorf("sock_diag: inode %d: %w", ino, os.ErrNotExist)
}
