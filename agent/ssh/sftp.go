// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// maxSFTPPacket bounds the packets the recorder parses. OpenSSH's
// sftp-server refuses packets over 256 KiB; past this the stream is not
// sftp as OpenSSH speaks it, and parsing stops (the bytes still pass, and
// a record says the operations are no longer itemised).
const maxSFTPPacket = 1 << 20

// SFTP packet types (draft-ietf-secsh-filexfer-02, version 3).
const (
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpSetstat  = 9
	fxpFsetstat = 10
	fxpOpendir  = 11
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRename   = 18
	fxpSymlink  = 20
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpExtended = 200
)

// Open flags.
const (
	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfAppend = 0x04
	fxfCreat  = 0x08
	fxfTrunc  = 0x10
	fxfExcl   = 0x20
)

// errSFTP is a malformed packet.
var errSFTP = errors.New("malformed sftp packet")

// sftpOp is a request waiting for its answer.
type sftpOp struct {
	op, path, path2 string
	flags           string
	handle          string // read: the handle whose bytes the answer carries
}

// sftpHandle is an open file or directory.
type sftpHandle struct {
	path          string
	dir           bool
	read, written uint64
}

// sftpLog follows an sftp subsystem's packets in both directions and
// records its file operations: what was opened how, removed, renamed,
// created; per file the bytes read and written, when it is closed.
type sftpLog struct {
	c  *session
	id string

	mu      sync.Mutex
	in, out sftpStream
	pending map[uint32]*sftpOp
	handles map[string]*sftpHandle
	stopped bool
}

// bulkHeader bounds the part of a WRITE or DATA packet the recorder
// collects: type, id, a handle of at most 256 bytes (the protocol's
// limit), offset and the data's length word. The file data after it passes
// uncollected, so a transfer costs the recorder no copy of its bytes.
const bulkHeader = 1 + 4 + 4 + 256 + 8 + 4

// sftpStream is one direction's position in its packets.
type sftpStream struct {
	buf  []byte // the current packet's collected bytes, its length word first
	want int    // len(buf) at which to act: 5 (length and type) until the packet's length is known
	skip uint64 // the current packet's bytes past buf, passed uncollected
}

func newSFTPLog(c *session, id string) *sftpLog {
	return &sftpLog{c: c, id: id, pending: map[uint32]*sftpOp{}, handles: map[string]*sftpHandle{}}
}

// feed takes the bytes of one direction as they pass.
func (l *sftpLog) feed(stream string, b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s *sftpStream
	var bulk byte
	switch stream {
	case "in":
		s, bulk = &l.in, fxpWrite
	case "out":
		s, bulk = &l.out, fxpData
	default:
		return
	}
	for len(b) > 0 && !l.stopped {
		if s.skip > 0 {
			k := min(uint64(len(b)), s.skip)
			s.skip -= k
			b = b[k:]
			continue
		}
		if s.want == 0 {
			s.want = 5
		}
		k := min(len(b), s.want-len(s.buf))
		s.buf = append(s.buf, b[:k]...)
		b = b[k:]
		if len(s.buf) < s.want {
			continue
		}
		n := binary.BigEndian.Uint32(s.buf)
		if s.want == 5 {
			if n == 0 || n > maxSFTPPacket {
				l.stop("packet length " + strconv.FormatUint(uint64(n), 10))
				return
			}
			s.want = 4 + int(n)
			if s.buf[4] == bulk {
				s.want = min(s.want, 4+bulkHeader)
			}
			if len(s.buf) < s.want {
				continue
			}
		}
		rest := uint64(4+n) - uint64(s.want)
		var err error
		if stream == "in" {
			err = l.request(s.buf[4:], rest)
		} else {
			err = l.response(s.buf[4:], rest)
		}
		if err != nil {
			l.stop(err.Error())
			return
		}
		s.skip, s.want = rest, 5
		s.buf = s.buf[:0]
		if cap(s.buf) > 64<<10 {
			s.buf = nil // let a large packet's buffer go
		}
	}
}

// stop gives up itemising: the stream is not sftp as we know it.
func (l *sftpLog) stop(why string) {
	l.stopped = true
	l.in, l.out = sftpStream{}, sftpStream{}
	l.record(map[string]string{"op": "unparsed", "error": "sftp operations not itemised from here on: " + why})
}

// request reads a client packet; rest is how many of its bytes follow p
// uncollected (a WRITE's data).
func (l *sftpLog) request(p []byte, rest uint64) error {
	r := sftpReader{b: p, rest: rest}
	typ := r.byte()
	if typ == 1 { // INIT: a version, no id
		return r.err
	}
	id := r.uint32()
	var op *sftpOp
	switch typ {
	case fxpOpen:
		path := r.string()
		flags := r.uint32()
		op = &sftpOp{op: "open", path: path, flags: openFlags(flags)}
	case fxpOpendir:
		op = &sftpOp{op: "opendir", path: r.string()}
	case fxpClose:
		op = &sftpOp{op: "close", handle: r.string()}
	case fxpRead:
		op = &sftpOp{op: "read", handle: r.string()}
	case fxpWrite:
		h := r.string()
		r.uint64()
		n := r.skipString()
		if hd := l.handles[h]; hd != nil && r.err == nil {
			hd.written += uint64(n)
		}
		op = &sftpOp{op: "write", handle: h}
	case fxpRemove:
		op = &sftpOp{op: "remove", path: r.string()}
	case fxpMkdir:
		op = &sftpOp{op: "mkdir", path: r.string()}
	case fxpRmdir:
		op = &sftpOp{op: "rmdir", path: r.string()}
	case fxpSetstat:
		op = &sftpOp{op: "setstat", path: r.string()}
	case fxpFsetstat:
		h := r.string()
		op = &sftpOp{op: "setstat", handle: h}
		if hd := l.handles[h]; hd != nil {
			op.path = hd.path
		}
	case fxpRename:
		op = &sftpOp{op: "rename", path: r.string(), path2: r.string()}
	case fxpSymlink:
		op = &sftpOp{op: "symlink", path: r.string(), path2: r.string()}
	case fxpExtended:
		switch name := r.string(); name {
		case "posix-rename@openssh.com":
			op = &sftpOp{op: "rename", path: r.string(), path2: r.string()}
		case "hardlink@openssh.com":
			op = &sftpOp{op: "hardlink", path: r.string(), path2: r.string()}
		}
	}
	if r.err != nil {
		return r.err
	}
	if op != nil {
		if len(l.pending) >= 4096 {
			return errors.New("too many requests without an answer")
		}
		l.pending[id] = op
	}
	return nil
}

// response reads a server packet and records the operation it answers;
// rest is how many of its bytes follow p uncollected (a DATA's data).
func (l *sftpLog) response(p []byte, rest uint64) error {
	r := sftpReader{b: p, rest: rest}
	typ := r.byte()
	if typ == 2 { // VERSION
		return r.err
	}
	id := r.uint32()
	if r.err != nil {
		return r.err
	}
	op := l.pending[id]
	if op == nil {
		return nil
	}
	delete(l.pending, id)
	switch typ {
	case fxpHandle:
		h := r.string()
		if r.err != nil {
			return r.err
		}
		if len(l.handles) >= 4096 {
			return errors.New("too many open handles")
		}
		l.handles[h] = &sftpHandle{path: op.path, dir: op.op == "opendir"}
		if op.op == "open" {
			l.record(map[string]string{"op": "open", "path": op.path, "flags": op.flags, "status": "ok"})
		}
	case fxpData:
		n := r.skipString()
		if hd := l.handles[op.handle]; hd != nil && r.err == nil {
			hd.read += uint64(n)
		}
	case fxpStatus:
		code := r.uint32()
		msg := r.string()
		if r.err != nil {
			return r.err
		}
		status := "ok"
		if code != 0 {
			status = "error " + strconv.FormatUint(uint64(code), 10)
			if msg != "" {
				status += ": " + msg
			}
		}
		switch op.op {
		case "read", "write":
			// Per-request answers are summed up at close; an error is
			// worth a record (1 is EOF, the normal end of a read).
			if code > 1 {
				l.record(map[string]string{"op": op.op, "path": l.pathOf(op.handle), "status": status})
			}
		case "close":
			hd := l.handles[op.handle]
			delete(l.handles, op.handle)
			if hd != nil && !hd.dir {
				l.record(map[string]string{"op": "close", "path": hd.path, "bytes_read": strconv.FormatUint(hd.read, 10),
					"bytes_written": strconv.FormatUint(hd.written, 10), "status": status})
			}
		case "opendir":
			// Listing a directory is not a change; only failures are noted.
			if code != 0 {
				l.record(map[string]string{"op": "opendir", "path": op.path, "status": status})
			}
		default:
			d := map[string]string{"op": op.op, "path": op.path, "status": status}
			if op.path2 != "" {
				d["path2"] = op.path2
			}
			if op.flags != "" {
				d["flags"] = op.flags
			}
			l.record(d)
		}
	}
	return nil
}

func (l *sftpLog) pathOf(h string) string {
	if hd := l.handles[h]; hd != nil {
		return hd.path
	}
	return ""
}

// flush records the files still open when the channel ends.
func (l *sftpLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, hd := range l.handles {
		if !hd.dir {
			l.record(map[string]string{"op": "close", "path": hd.path, "bytes_read": strconv.FormatUint(hd.read, 10),
				"bytes_written": strconv.FormatUint(hd.written, 10), "status": "channel ended"})
		}
	}
	l.handles = map[string]*sftpHandle{}
}

func (l *sftpLog) record(d map[string]string) {
	r := l.c.sess.Base
	r.Kind = audit.KindSFTP
	r.Time = time.Now().UTC()
	r.Process, r.Identity, r.Client, r.Listener = nil, nil, "", ""
	d[audit.DetailChannel] = l.id
	r.Detail = d
	l.c.s.opts.Recorder.RecordEventually(&r)
}

func openFlags(f uint32) string {
	var out []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{fxfRead, "read"}, {fxfWrite, "write"}, {fxfAppend, "append"}, {fxfCreat, "create"}, {fxfTrunc, "truncate"}, {fxfExcl, "exclusive"}} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// sftpReader reads the fields of one packet; the first error sticks.
type sftpReader struct {
	b    []byte
	rest uint64 // the packet's bytes after b, not collected
	err  error
}

func (r *sftpReader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errSFTP
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *sftpReader) uint32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.err = errSFTP
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *sftpReader) uint64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errSFTP
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *sftpReader) string() string {
	n := r.uint32()
	if r.err != nil || uint64(len(r.b)) < uint64(n) {
		r.err = errSFTP
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// skipString passes over a string field (file data), which may run past
// the collected bytes into the uncollected rest, and returns its length.
func (r *sftpReader) skipString() int {
	n := uint64(r.uint32())
	if r.err != nil || uint64(len(r.b))+r.rest < n {
		r.err = errSFTP
		return 0
	}
	k := min(n, uint64(len(r.b)))
	r.b = r.b[k:]
	r.rest -= n - k
	return int(n)
}
