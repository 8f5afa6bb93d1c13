// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

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
