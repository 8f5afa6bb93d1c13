// SPDX-License-Identifier: Apache-2.0

// Package rawio reads and writes stream sockets with raw system calls on
// Go's network poller.
//
// A net.Conn's Read and Write tell the runtime they enter a system call
// (entersyscall), so that a call that blocks does not hold its P. On a
// socket in non-blocking mode, as every socket on the poller is, read and
// write never block: they copy what is ready and return, or return EAGAIN
// and the goroutine parks on the poller exactly as before. What the
// runtime's bookkeeping costs there is measured, not the call: each
// system call entered while every P was idle wakes the sysmon thread,
// which then polls every 20 µs for a while before it sleeps again. A proxy
// that goes idle between each request and its answer pays that wake-up
// twice per round trip: on the 2-vCPU machine of docs/BENCHMARKS.md a bare
// Go relay spent 103–110 µs of CPU per pgbench transaction at one client
// with net.Conn's calls and 46–50 µs with raw ones (pgbouncer: 45 µs), and
// 27 against 21–22 µs at eight.
//
// A raw call holds its P for its duration, which for a non-blocking socket
// is the copy into or out of the socket buffer (on loopback, with the
// receiver's TCP processing): microseconds, like any other code between
// two scheduling points. Files are not written this way: a buffered write
// to a file can sleep (the kernel throttles writers while too much memory
// is dirty, or reads a page back in first), and a raw call that sleeps
// keeps its P, so that with the daemon's one P every session would wait
// for the disk.
package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a stream socket whose Read and Write make raw system calls. Its
// other methods (deadlines, Close, addresses) are the wrapped
// connection's, and deadlines and Close apply to Read and Write as they
// do to the wrapped connection's own.
type Conn struct {
	net.Conn
	rc syscall.RawConn
	// One call's state per direction, with the function the poller runs
	// bound once, so that a Read or Write allocates nothing; the mutex
	// keeps concurrent calls in one direction apart, as net.Conn allows
	// them.
	rd, wr op
}

// op is the state of one Read or Write in progress.
type op struct {
	mu    sync.Mutex
	b     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// Wrap returns c as a Conn when it is a TCP or Unix stream socket, and c
// itself otherwise (a TLS connection, an in-memory pipe), so that callers
// can wrap whatever they hold.
func Wrap(c net.Conn) net.Conn {
	var sc syscall.Conn
	switch t := c.(type) {
	case *net.TCPConn:
		sc = t
	case *net.UnixConn:
		sc = t
	default:
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	// Only stream sockets: a zero-byte read is the end of the stream
	// there and nowhere else (a Unix datagram socket is a *net.UnixConn
	// too).
	typ := -1
	if err := rc.Control(func(fd uintptr) {
		typ, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil || typ != syscall.SOCK_STREAM {
		return c
	}
	w := &Conn{Conn: c, rc: rc}
	w.rd.fn = w.rd.read
	w.wr.fn = w.wr.write
	return w
}

// Read reads what the socket holds into b, waiting on the poller until
// something arrives, like net.Conn's Read; io.EOF at the end of the
// stream.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	o := &c.rd
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b, o.n, o.errno = b, 0, 0
	err := c.rc.Read(o.fn)
	n, errno := o.n, o.errno
	o.b = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is one attempt of a Read, run by the poller: false to wait until
// the socket is readable.
func (o *op) read(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&o.b[0])), uintptr(len(o.b)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		o.n, o.errno = int(r), e
		return true
	}
}

// Write writes all of b, waiting on the poller while the socket buffer is
// full, like net.Conn's Write.
func (c *Conn) Write(b []byte) (int, error) {
	o := &c.wr
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b, o.n, o.errno = b, 0, 0
	err := c.rc.Write(o.fn)
	n, errno := o.n, o.errno
	o.b = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

// write is one attempt of a Write, run by the poller: false to wait until
// the socket is writable again.
func (o *op) write(fd uintptr) bool {
	for o.n < len(o.b) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&o.b[o.n])), uintptr(len(o.b)-o.n))
		switch e {
		case 0:
			o.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			o.errno = e
			return true
		}
	}
	return true
}

// opError wraps a system call's error as net.Conn's methods do, so that
// errors.Is finds the errno (ECONNRESET, EPIPE) and the error names the
// connection.
func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
