// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/tollgate-dev/tollgate/redirect"
	"golang.org/x/sys/unix"
)

// bypassResult is what a bypass attempt reports on stdout.
type bypassResult struct {
	UID    int    `json:"uid"`     // real uid of the attempting process
	CapEff string `json:"cap_eff"` // its effective capabilities, from /proc
	Reply  string `json:"reply,omitempty"`
	Err    string `json:"err,omitempty"`
	Note   string `json:"note,omitempty"`
}

// ipprotoMPTCP is IPPROTO_MPTCP (not in every x/sys release).
const ipprotoMPTCP = 262

// bypassChild runs one attempt to reach ADDR around tollgate and sends
// TOKEN. Args: ATTEMPT ADDR TOKEN [EXTRA]. It runs as an unprivileged user
// inside the workload cgroup; what reached the server is judged there.
func bypassChild(args []string) int {
	res := bypassResult{UID: os.Getuid(), CapEff: capEff()}
	attempt, addr, token := args[0], args[1], args[2]
	extra := ""
	if len(args) > 3 {
		extra = args[3]
	}
	var fd int
	var err error
	switch attempt {
	case "dial":
		fd, err = dialFD(addr, "", 0, 0, &res.Note)
	case "bind-dial":
		fd, err = dialFD(addr, extra, 0, 0, &res.Note)
	case "so-mark":
		fd, err = dialFD(addr, "", redirect.DefaultMark, 0, &res.Note)
	case "mptcp":
		fd, err = dialFD(addr, "", 0, ipprotoMPTCP, &res.Note)
	case "io_uring":
		fd, err = ioUringConnect(addr)
	case "tfo":
		fd, err = fastOpen(addr, token)
		token = "" // sent with the SYN
	case "raw":
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		if err == nil {
			unix.Close(fd)
			err = fmt.Errorf("raw socket created")
		}
	case "cgroup-escape":
		// Move itself to the cgroup2 root, out of the workload.
		werr := os.WriteFile(extra+"/cgroup.procs", []byte(strconv.Itoa(os.Getpid())), 0)
		res.Note = fmt.Sprintf("move to %s: %v", extra, werr)
		fd, err = dialFD(addr, "", 0, 0, nil)
	case "fork", "setsid", "userns", "userns+netns":
		return bypassGrandchild(attempt, args[1:], res)
	default:
		res.Err = "unknown attempt " + attempt
	}
	if err != nil {
		res.Err = err.Error()
	} else if fd > 0 {
		res.Reply, err = exchange(fd, token)
		if err != nil {
			res.Err = err.Error()
		}
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// bypassGrandchild runs a plain or SO_MARK dial in a new process: forked
// (and exec'd), in a new session, or in new user (and network) namespaces.
func bypassGrandchild(attempt string, args []string, res bypassResult) int {
	mode := "dial"
	cmd := exec.Command("/proc/self/exe", append([]string{mode}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=bypass")
	cmd.Stderr = os.Stderr
	uid := os.Getuid()
	switch attempt {
	case "setsid":
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	case "userns", "userns+netns":
		// Root (with every capability) inside a new user namespace:
		// SO_MARK is still checked against the socket's network
		// namespace, which the user namespace does not own.
		cmd.Args[1] = "so-mark"
		flags := uintptr(syscall.CLONE_NEWUSER)
		if attempt == "userns+netns" {
			flags |= syscall.CLONE_NEWNET
			cmd.Args[1] = "dial"
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	}
	out, err := cmd.Output()
	if err != nil {
		res.Err = fmt.Sprintf("grandchild: %v", err)
		json.NewEncoder(os.Stdout).Encode(res)
		return 0
	}
	var gr bypassResult
	if err := json.Unmarshal(out, &gr); err != nil {
		res.Err = fmt.Sprintf("grandchild output %q: %v", out, err)
		json.NewEncoder(os.Stdout).Encode(res)
		return 0
	}
	gr.Note = strings.TrimSpace(gr.Note + " " + attempt + ": grandchild uid (in its namespace) " + strconv.Itoa(gr.UID) + " capeff " + gr.CapEff)
	gr.UID, gr.CapEff = res.UID, res.CapEff
	json.NewEncoder(os.Stdout).Encode(gr)
	return 0
}

// dialFD connects a socket of addr's family (a v4-mapped or unspecified
// IPv6 address stays AF_INET6), optionally bound first, marked, or of
// another protocol.
func dialFD(addr, bind string, mark uint32, proto int, note *string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	fam := unix.AF_INET6
	if ap.Addr().Is4() {
		fam = unix.AF_INET
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if mark != 0 && note != nil {
		// Refused without CAP_NET_ADMIN over the socket's network
		// namespace; the attempt carries on unmarked and says so.
		*note = fmt.Sprintf("SO_MARK: %v", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)))
	}
	if bind != "" {
		ba, err := netip.ParseAddr(bind)
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(ba, 0), fam)); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bind %s: %w", bind, err)
		}
	}
	tv := unix.Timeval{Sec: 5}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if err := unix.Connect(fd, sockaddr(ap, fam)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}

// fastOpen sends token in the SYN with TCP Fast Open (sendto MSG_FASTOPEN,
// no connect call).
func fastOpen(addr, token string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Sendto(fd, []byte(token+"\n"), unix.MSG_FASTOPEN, sockaddr(ap, unix.AF_INET)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sendto MSG_FASTOPEN %s: %w", addr, err)
	}
	return fd, nil
}

func sockaddr(ap netip.AddrPort, fam int) unix.Sockaddr {
	if fam == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// exchange sends token (unless empty: already sent) and reads the server's
// one-line answer.
func exchange(fd int, token string) (string, error) {
	f := os.NewFile(uintptr(fd), "conn")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if token != "" {
		if _, err := fmt.Fprintf(c, "%s\n", token); err != nil {
			return "", err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func capEff() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// ioUringConnect connects a TCP socket to a v4 addr through io_uring
// (IORING_OP_CONNECT) instead of the connect system call.
func ioUringConnect(addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return -1, fmt.Errorf("io_uring attempt wants an IPv4 address, got %q", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// struct io_uring_params: 10 u32, io_sqring_offsets, io_cqring_offsets.
	var params [120]byte
	rfd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("io_uring_setup: %w", errno)
	}
	ring := int(rfd)
	defer unix.Close(ring)
	u32 := func(b []byte, off int) uint32 { return binary.NativeEndian.Uint32(b[off:]) }
	sqEntries, cqEntries := u32(params[:], 0), u32(params[:], 4)
	const sqOff, cqOff = 40, 80
	sqTail, sqMask, sqArray := u32(params[:], sqOff+4), u32(params[:], sqOff+8), u32(params[:], sqOff+24)
	cqHead, cqTail, cqMask, cqCqes := u32(params[:], cqOff), u32(params[:], cqOff+4), u32(params[:], cqOff+8), u32(params[:], cqOff+20)
	sqRing, err := unix.Mmap(ring, 0, int(sqArray+sqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mmap sq ring: %w", err)
	}
	defer unix.Munmap(sqRing)
	cqRing, err := unix.Mmap(ring, 0x8000000, int(cqCqes+cqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mmap cq ring: %w", err)
	}
	defer unix.Munmap(cqRing)
	sqes, err := unix.Mmap(ring, 0x10000000, int(sqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mmap sqes: %w", err)
	}
	defer unix.Munmap(sqes)

	sa := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	const ioringOpConnect = 16
	sqe := sqes[:64]
	clear(sqe)
	sqe[0] = ioringOpConnect
	binary.NativeEndian.PutUint32(sqe[4:], uint32(fd))
	binary.NativeEndian.PutUint64(sqe[8:], uint64(unix.SizeofSockaddrInet4)) // addr2: addrlen
	binary.NativeEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(sa))))
	tail := (*uint32)(unsafe.Pointer(&sqRing[sqTail]))
	t := atomic.LoadUint32(tail)
	binary.NativeEndian.PutUint32(sqRing[sqArray+(t&u32(sqRing, int(sqMask)))*4:], 0)
	atomic.StoreUint32(tail, t+1)
	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(ring), 1, 1, 1 /* IORING_ENTER_GETEVENTS */, 0, 0)
	runtime.KeepAlive(sa)
	if errno != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("io_uring_enter: %w", errno)
	}
	head := atomic.LoadUint32((*uint32)(unsafe.Pointer(&cqRing[cqHead])))
	if head == atomic.LoadUint32((*uint32)(unsafe.Pointer(&cqRing[cqTail]))) {
		unix.Close(fd)
		return -1, fmt.Errorf("io_uring: no completion")
	}
	cqe := cqRing[cqCqes+(head&u32(cqRing, int(cqMask)))*16:]
	res := int32(binary.NativeEndian.Uint32(cqe[8:]))
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&cqRing[cqHead])), head+1)
	if res < 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("io_uring connect %s: %w", addr, unix.Errno(-res))
	}
	return fd, nil
}
