// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv selects the client mode when the test binary is re-executed as
// an unmodified client inside a test cgroup.
const childEnv = "TOLLGATE_E2E_CHILD"

// childResult is what a child client reports on stdout, one per connection.
type childResult struct {
	PID    int    `json:"pid"`
	Local  string `json:"local"`
	Remote string `json:"remote"`
	Reply  string `json:"reply"`
	Err    string `json:"err,omitempty"`
}

// childMain is the client. Modes:
//
//	tcp ADDR MSG         dial (tcp4 or tcp6 by address), send MSG, half-close, read all
//	mapped ADDR4 MSG     the same from an AF_INET6 socket to ::ffff:ADDR4
//	udp ADDR MSG         one datagram, one reply
//	many ADDR N SIZE     N concurrent tcp connections, each SIZE unique bytes, checked
func childMain(mode string, args []string) int {
	enc := json.NewEncoder(os.Stdout)
	switch mode {
	case "bypass":
		return bypassChild(args)
	case "relay":
		return floorRelayMain(args)
	case "tcp", "mapped":
		enc.Encode(childTCP(mode, args[0], []byte(args[1])))
	case "udp":
		enc.Encode(childUDP(args[0], args[1]))
	case "many":
		var n, size int
		fmt.Sscan(args[1], &n)
		fmt.Sscan(args[2], &size)
		results := make([]childResult, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := bytes.Repeat([]byte{byte('a' + i%26)}, size)
				copy(msg, fmt.Sprintf("conn-%04d-", i))
				r := childTCP("tcp", args[0], msg)
				if r.Err == "" {
					// The echo server greets with one line, then echoes.
					if i := bytes.IndexByte([]byte(r.Reply), '\n'); i < 0 || r.Reply[i+1:] != string(msg) {
						r.Err = "echo mismatch"
					}
				}
				r.Reply = ""
				results[i] = r
			}()
		}
		wg.Wait()
		for _, r := range results {
			enc.Encode(r)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		return 2
	}
	return 0
}

func childTCP(mode, addr string, msg []byte) childResult {
	res := childResult{PID: os.Getpid()}
	var c net.Conn
	var err error
	if mode == "mapped" {
		c, err = dialMapped(addr)
	} else {
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
	}
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer c.Close()
	res.Local, res.Remote = c.LocalAddr().String(), c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(msg); err != nil {
		res.Err = err.Error()
		return res
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(c)
	res.Reply = string(b)
	if err != nil {
		res.Err = err.Error()
	}
	return res
}

// dialMapped connects from an AF_INET6 socket to ::ffff:a.b.c.d, which Go's
// net package would turn into an AF_INET socket.
func dialMapped(addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom16(ap.Addr().As16()).As16()}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	return net.FileConn(f)
}

func childUDP(addr, msg string) childResult {
	res := childResult{PID: os.Getpid()}
	c, err := net.Dial("udp", addr)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer c.Close()
	res.Local, res.Remote = c.LocalAddr().String(), c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(msg))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	res.Reply = string(buf[:n])
	if err != nil {
		res.Err = err.Error()
	}
	return res
}

// runChild runs the test binary as a client inside cgroup (relative to the
// cgroup2 mount; empty: the test's own cgroup). The child's sockets are
// created in that cgroup from its first instruction (CLONE_INTO_CGROUP).
func runChild(t testing.TB, cgroup string, mode string, args ...string) ([]childResult, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if cgroup != "" {
		f, err := os.Open(filepath.Join(cgroup2Root(t), cgroup))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s %v: %v\n%s", mode, args, err, stderr.String())
	}
	var res []childResult
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r childResult
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("child output %q: %v", out, err)
		}
		res = append(res, r)
	}
	return res, cmd.Process.Pid
}
