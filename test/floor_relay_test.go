// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/rawio"
)

// The floor relay is what any Go proxy that reads the bytes it passes on
// must do and nothing else: per connection, one goroutine per direction
// reading into a 64 KiB buffer and writing what it read, on the same
// netpoller, with the same raw socket calls as tollgate's relay
// (internal/rawio) and the daemon's default GOMAXPROCS (half the CPUs). It
// parses nothing, decides nothing and records nothing, so its CPU per
// transaction in BenchmarkPostgres is the floor of the syscalls tollgate
// must make in Go: tollgate's cost above it is its own work.

// floorRelayMain listens on args[0], relays each connection to args[1]
// and prints the address it listens on. It runs until killed.
func floorRelayMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: relay LISTEN UPSTREAM")
		return 2
	}
	runtime.GOMAXPROCS(max(1, runtime.NumCPU()/2))
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", args[1])
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			pass := func(dst, src net.Conn) {
				buf := make([]byte, 64<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				done <- struct{}{}
			}
			rc, ru := rawio.Wrap(c), rawio.Wrap(u)
			go pass(ru, rc)
			go pass(rc, ru)
			<-done
		}()
	}
}

// floorRelay is a running floor relay process.
type floorRelay struct {
	cmd  *exec.Cmd
	addr string
}

// startFloorRelay starts the floor relay in front of upstream (host:port)
// as a child process, so that its CPU time is its own.
func startFloorRelay(t testing.TB, upstream string) *floorRelay {
	t.Helper()
	cmd := exec.Command(os.Args[0], "127.0.0.1:0", upstream)
	cmd.Env = append(os.Environ(), childEnv+"=relay")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("floor relay: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, out)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			t.Fatal("floor relay did not start")
		}
		return &floorRelay{cmd: cmd, addr: addr}
	case <-time.After(10 * time.Second):
		t.Fatal("floor relay did not start within 10 s")
	}
	return nil
}

// dsn is a libpq connection string through the relay.
func (p *floorRelay) dsn(user, db string) string {
	host, port, _ := net.SplitHostPort(p.addr)
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", host, port, user, db)
}
