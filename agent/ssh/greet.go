// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"time"
)

// SSH lets the client choose the cipher: the first of the client's list
// that the server also offers (RFC 4253, 7.1). OpenSSH lists
// chacha20-poly1305 first, which x/crypto runs without assembly on amd64
// at a seventh of AES-GCM's speed. So the proxy reads the client's KEXINIT
// before x/crypto sends its own, and offers only the first of the target's
// ciphers that the client lists: a server preference, as TLS has. The
// client gets a cipher it listed from a server that offers one, as from
// sshd with a one-cipher Ciphers line.

// maxGreeting bounds what the proxy reads before it hands the connection
// to x/crypto: the client's identification string (and any lines before
// it) and its KEXINIT, which is about 1.5 KiB from OpenSSH.
const maxGreeting = 64 << 10

// kexinitWait bounds the wait for the client's KEXINIT. The client is a
// process on this host and sends its KEXINIT as soon as it has read the
// proxy's identification string; a client that waits for the server's
// KEXINIT first (JSch does) is offered the target's whole list after
// this long.
const kexinitWait = 250 * time.Millisecond

const msgKexInit = 20

// Errors of the greeting.
var (
	// errGreetingLong means the client sent more than maxGreeting bytes
	// without an identification string.
	errGreetingLong = errors.New("ssh: no identification string in the client's first 64 KiB")
	// errGreetingWrite means x/crypto's first write was not the
	// identification string greet had sent: a change in x/crypto, which
	// fails the handshake rather than send the client a second one.
	errGreetingWrite = errors.New("ssh: first write is not the identification string already sent")
	// errNotKexInit means the client's first packet is not a KEXINIT
	// that parses.
	errNotKexInit = errors.New("ssh: first packet is not a KEXINIT")
)

// kexAlgos is what greet read of the client's KEXINIT.
type kexAlgos struct {
	ciphersC2S, ciphersS2C []string
}

// greet sends the proxy's identification string, reads the client's and
// then its KEXINIT, and returns the connection for x/crypto, which reads
// those bytes again and whose own identification string is swallowed.
// deadline is the handshake's, in force on c. The algorithms are nil when
// no KEXINIT came within kexinitWait or it did not parse; x/crypto then
// meets whatever the client sent as it would have.
func greet(c net.Conn, version string, deadline time.Time) (net.Conn, *kexAlgos, error) {
	line := []byte(version + "\r\n")
	if _, err := c.Write(line); err != nil {
		return nil, nil, err
	}
	r := &greetReader{c: c, buf: make([]byte, 0, 4096)}
	start, err := r.identification()
	if err != nil {
		return nil, nil, err
	}
	c.SetReadDeadline(earliest(deadline, time.Now().Add(kexinitWait)))
	algos, _ := r.kexInit(start)
	c.SetReadDeadline(deadline)
	return &greetedConn{Conn: c, pending: r.buf, sent: line}, algos, nil
}

func earliest(a, b time.Time) time.Time {
	if !a.IsZero() && a.Before(b) {
		return a
	}
	return b
}

// greetReader keeps every byte it reads, for x/crypto to read again.
type greetReader struct {
	c   net.Conn
	buf []byte
}

// fill reads until buf holds n bytes.
func (r *greetReader) fill(n int) error {
	if n > maxGreeting {
		return errGreetingLong
	}
	for len(r.buf) < n {
		if cap(r.buf)-len(r.buf) < 1024 {
			r.buf = slices.Grow(r.buf, max(4096, n-len(r.buf)))
		}
		k, err := r.c.Read(r.buf[len(r.buf):min(cap(r.buf), maxGreeting)])
		r.buf = r.buf[:len(r.buf)+k]
		if k == 0 && err != nil {
			return err
		}
	}
	return nil
}

// identification reads up to the end of the client's identification
// string, the line that starts with "SSH-" (x/crypto skips lines before
// it), and returns where the binary packets start.
func (r *greetReader) identification() (int, error) {
	start, scanned := 0, 0
	for {
		if i := bytes.IndexByte(r.buf[scanned:], '\n'); i >= 0 {
			end := scanned + i + 1
			if bytes.HasPrefix(r.buf[start:], []byte("SSH-")) {
				return end, nil
			}
			start, scanned = end, end
			continue
		}
		scanned = len(r.buf)
		if err := r.fill(len(r.buf) + 1); err != nil {
			return 0, err
		}
	}
}

// kexInit reads the client's first binary packet, at start, and parses it.
func (r *greetReader) kexInit(start int) (*kexAlgos, error) {
	if err := r.fill(start + 4); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(r.buf[start:])
	if n > maxGreeting {
		return nil, errNotKexInit
	}
	if err := r.fill(start + 4 + int(n)); err != nil {
		return nil, err
	}
	return parseKexInit(r.buf[start : start+4+int(n)])
}

// parseKexInit reads the cipher lists of an unencrypted KEXINIT packet
// (RFC 4253, 6 and 7.1): uint32 packet_length, byte padding_length, a
// payload of byte 20, a 16-byte cookie and ten name-lists (kex, host key,
// ciphers both ways, ...), then padding.
func parseKexInit(p []byte) (*kexAlgos, error) {
	if len(p) < 5 {
		return nil, errNotKexInit
	}
	n, pad := binary.BigEndian.Uint32(p), uint32(p[4])
	if n < pad+1 || uint64(len(p)) < 4+uint64(n) {
		return nil, errNotKexInit
	}
	payload := p[5 : 4+n-pad]
	if len(payload) < 17 || payload[0] != msgKexInit {
		return nil, errNotKexInit
	}
	rest := payload[17:]
	var lists [4][]string
	for i := range lists {
		if len(rest) < 4 {
			return nil, errNotKexInit
		}
		l := binary.BigEndian.Uint32(rest)
		if uint64(len(rest)-4) < uint64(l) {
			return nil, errNotKexInit
		}
		if l > 0 {
			lists[i] = strings.Split(string(rest[4:4+l]), ",")
		}
		rest = rest[4+l:]
	}
	return &kexAlgos{ciphersC2S: lists[2], ciphersS2C: lists[3]}, nil
}

// offerCiphers is what the proxy offers a client whose KEXINIT listed
// algos: the first of the target's ciphers (in the proxy's order of
// preference) that the client lists both ways, alone. It is the whole
// list when none is in common, so that the client fails as against sshd
// and names the offer, or when the KEXINIT was not read.
func offerCiphers(target []string, algos *kexAlgos) []string {
	if algos != nil {
		for _, c := range target {
			if slices.Contains(algos.ciphersC2S, c) && slices.Contains(algos.ciphersS2C, c) {
				return []string{c}
			}
		}
	}
	return slices.Clone(target)
}

// greetedConn is the client's connection as x/crypto sees it after greet.
type greetedConn struct {
	net.Conn
	pending []byte // the client's bytes greet read; only Read touches it
	sent    []byte // the identification string greet sent; only Write touches it
}

// Read gives the bytes greet read first.
func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		if len(g.pending) == 0 {
			g.pending = nil // not the greeting's buffer for the whole session
		}
		return n, nil
	}
	return g.Conn.Read(p)
}

// Write swallows x/crypto's identification string, which greet sent.
func (g *greetedConn) Write(p []byte) (int, error) {
	if g.sent != nil {
		if !bytes.Equal(p, g.sent) {
			return 0, errGreetingWrite
		}
		g.sent = nil
		return len(p), nil
	}
	return g.Conn.Write(p)
}
