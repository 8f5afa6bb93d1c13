// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeConn is a connection whose input is fixed and whose output is kept.
type fakeConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *fakeConn) Read(b []byte) (int, error)  { return c.in.Read(b) }
func (c *fakeConn) Write(b []byte) (int, error) { return c.out.Write(b) }
func (c *fakeConn) Close() error                { return nil }
func (c *fakeConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432} }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// startupPacket encodes a startup packet with version and key/value pairs.
func startupPacket(version uint32, kv ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint32(b, version)
	for _, s := range kv {
		b = append(b, s...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// noTerminator drops a packet's final NUL, keeping its length right.
func noTerminator(p []byte) []byte {
	p = p[:len(p)-1]
	binary.BigEndian.PutUint32(p, uint32(len(p)))
	return p
}

func request(code uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code)
}

const v30, v32 = 3 << 16, 3<<16 | 2

func TestNegotiate(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		wantOut string // bytes written before the result
		minor   uint32
		code    string // SQLSTATE of the error, "" for success
		params  string
	}{
		{"plain 3.0", startupPacket(v30, "user", "u", "database", "d", "application_name", "app"), "", 0, "", "user=u database=d application_name=app"},
		{"3.2", startupPacket(v32, "user", "u"), "", 2, "", "user=u"},
		{"ssl then startup", append(request(sslRequestCode), startupPacket(v30, "user", "u")...), "N", 0, "", "user=u"},
		{"gssenc then ssl then startup", append(append(request(gssEncRequestCode), request(sslRequestCode)...), startupPacket(v30, "user", "u")...), "NN", 0, "", "user=u"},
		{"allowed settings", startupPacket(v30, "user", "u", "DateStyle", "ISO", "extra_float_digits", "3", "options", "-c statement_timeout=5s --search_path=a\\ b -cenable_seqscan=off"), "", 0, "", ""},
		{"no user", startupPacket(v30, "database", "d"), "", 0, "28000", ""},
		{"replication", startupPacket(v30, "user", "u", "replication", "database"), "", 0, "0A000", ""},
		{"replication off", startupPacket(v30, "user", "u", "replication", "false"), "", 0, "", ""},
		{"role option", startupPacket(v30, "user", "u", "options", "-c role=admin"), "", 0, "0A000", ""},
		{"replication role option", startupPacket(v30, "user", "u", "options", "--session_replication_role=replica"), "", 0, "0A000", ""},
		{"other switch", startupPacket(v30, "user", "u", "options", "-F"), "", 0, "0A000", ""},
		{"unknown parameter", startupPacket(v30, "user", "u", "session_authorization", "x"), "", 0, "0A000", ""},
		{"scs off", startupPacket(v30, "user", "u", "standard_conforming_strings", "off"), "", 0, "", ""},
		{"sjis", startupPacket(v30, "user", "u", "client_encoding", "SJIS"), "", 0, "", ""},
		{"protocol 2", startupPacket(2<<16, "user", "u"), "", 0, "0A000", ""},
		{"too long", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 20000), v30), "", 0, "08P01", ""},
		{"too short", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 4), v30), "", 0, "08P01", ""},
		{"no terminator", noTerminator(startupPacket(v30, "user", "u")), "", 0, "08P01", ""},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), "", 0, "08P01", ""},
		{"ssl request too long", append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 12), sslRequestCode), 0, 0, 0, 0), "", 0, "08P01", ""},
		{"too many requests", bytes.Repeat(request(gssEncRequestCode), 5), "NNNN", 0, "08P01", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeConn{in: bytes.NewReader(tc.in)}
			_, st, err := negotiate(c, nil)
			if tc.code != "" {
				var e *Error
				if !errors.As(err, &e) || e.Code != tc.code {
					t.Fatalf("err %v, want SQLSTATE %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.out.String() != tc.wantOut {
				t.Errorf("wrote %q, want %q", c.out.String(), tc.wantOut)
			}
			if st.Minor != tc.minor {
				t.Errorf("minor %d, want %d", st.Minor, tc.minor)
			}
			if tc.params != "" {
				var got []string
				for _, p := range st.Params {
					got = append(got, p.Key+"="+p.Value)
				}
				if strings.Join(got, " ") != tc.params {
					t.Errorf("params %q, want %q", strings.Join(got, " "), tc.params)
				}
			}
		})
	}
}

// TestNegotiateProtocolVersion: a newer minor or _pq_ options are owed
// NegotiateProtocolVersion, sent only once the upstream server said which
// version it speaks (which negotiation then names), never at startup.
func TestNegotiateProtocolVersion(t *testing.T) {
	c := &fakeConn{in: bytes.NewReader(startupPacket(3<<16|7, "user", "u", "_pq_.compression", "on"))}
	_, st, err := negotiate(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Minor != 2 || st.Requested != 7 {
		t.Fatalf("minor %d, requested %d", st.Minor, st.Requested)
	}
	if out := c.out.Bytes(); len(out) != 0 {
		t.Fatalf("wrote %q at startup", out)
	}
	for _, tc := range []struct {
		requested, server uint32
		options           []string
		want              int // the newest minor announced; -1 for none
	}{
		{7, 2, []string{"_pq_.compression"}, 2},
		{2, 0, nil, 0}, // a 3.2 client, a server that speaks 3.0
		{2, 2, nil, -1},
		{0, 0, nil, -1},
		{0, 0, []string{"_pq_.x"}, 0},
	} {
		st := &Startup{Requested: tc.requested, Minor: tc.server, Unrecognized: tc.options}
		out := negotiation(st)
		if tc.want < 0 {
			if out != nil {
				t.Errorf("%+v: wrote %q", tc, out)
			}
			continue
		}
		if len(out) < 5 || out[0] != 'v' {
			t.Fatalf("%+v: wrote %q", tc, out)
		}
		var m pgproto3.NegotiateProtocolVersion
		if err := m.Decode(out[5:]); err != nil {
			t.Fatal(err)
		}
		if m.NewestMinorProtocol != 3<<16|uint32(tc.want) || len(m.UnrecognizedOptions) != len(tc.options) {
			t.Errorf("%+v: got %+v", tc, m)
		}
	}
}

// TestVersionWatch: the server's NegotiateProtocolVersion is found in the
// login's message stream however the reads cut it.
func TestVersionWatch(t *testing.T) {
	var stream []byte
	stream, _ = (&pgproto3.AuthenticationOk{}).Encode(stream)
	stream, _ = (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 3 << 16, UnrecognizedOptions: []string{"_pq_.a"}}).Encode(stream)
	stream, _ = (&pgproto3.ParameterStatus{Name: "a", Value: "b"}).Encode(stream)
	for cut := 1; cut <= len(stream); cut++ {
		w := &versionWatch{}
		for b := stream; len(b) > 0; {
			n := min(cut, len(b))
			w.scan(b[:n])
			b = b[n:]
		}
		if v, ok := w.negotiated(); !ok || v != 0 || w.hn != 0 || w.left != 0 {
			t.Fatalf("cut %d: %d %v (state %d %d)", cut, v, ok, w.hn, w.left)
		}
	}
	w := &versionWatch{}
	w.scan(stream[:9])
	if _, ok := w.negotiated(); ok {
		t.Fatal("negotiated without the message")
	}
}

func TestNegotiateCancel(t *testing.T) {
	b := binary.BigEndian.AppendUint32(nil, 16)
	b = binary.BigEndian.AppendUint32(b, cancelRequestCode)
	b = binary.BigEndian.AppendUint32(b, 4242)
	b = append(b, 1, 2, 3, 4)
	_, st, err := negotiate(&fakeConn{in: bytes.NewReader(b)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Cancel == nil || st.Cancel.ProcessID != 4242 || !bytes.Equal(st.Cancel.SecretKey, []byte{1, 2, 3, 4}) {
		t.Fatalf("cancel %+v", st.Cancel)
	}
	// A cancel without a key is malformed.
	b = binary.BigEndian.AppendUint32(nil, 12)
	b = binary.BigEndian.AppendUint32(b, cancelRequestCode)
	b = binary.BigEndian.AppendUint32(b, 4242)
	if _, _, err := negotiate(&fakeConn{in: bytes.NewReader(b)}, nil); err == nil {
		t.Fatal("short cancel accepted")
	}
}

// selfSigned returns a server TLS config with a fresh certificate.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"tollgate-test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestNegotiateTLS: SSLRequest gets 'S' and a handshake when TLS is
// configured; direct TLS needs ALPN "postgresql".
func TestNegotiateTLS(t *testing.T) {
	conf := selfSigned(t)
	for _, tc := range []struct {
		name   string
		direct bool
		alpn   []string
		ok     bool
	}{
		{"sslrequest", false, nil, true},
		{"direct with alpn", true, []string{"postgresql"}, true},
		{"direct without alpn", true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := net.Pipe()
			defer srv.Close()
			defer cli.Close()
			type result struct {
				st  *Startup
				err error
			}
			done := make(chan result, 1)
			go func() {
				c, st, err := negotiate(srv, conf)
				if err != nil {
					writeError(c, err)
				}
				c.Close()
				done <- result{st, err}
			}()
			if !tc.direct {
				cli.Write(request(sslRequestCode))
				var b [1]byte
				if _, err := io.ReadFull(cli, b[:]); err != nil || b[0] != 'S' {
					t.Fatalf("ssl response %q %v", b, err)
				}
			}
			tc2 := tls.Client(cli, &tls.Config{InsecureSkipVerify: true, NextProtos: tc.alpn})
			if err := tc2.Handshake(); err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, tc2)
			go tc2.Write(startupPacket(v30, "user", "u"))
			r := <-done
			if tc.ok != (r.err == nil) {
				t.Fatalf("err %v", r.err)
			}
			if r.err == nil && (r.st.TLS == nil || r.st.User != "u") {
				t.Fatalf("startup %+v", r.st)
			}
		})
	}
	// Without a TLS config, SSLRequest is answered 'N', never 'E'.
	c := &fakeConn{in: bytes.NewReader(append(request(sslRequestCode), startupPacket(v30, "user", "u")...))}
	if _, _, err := negotiate(c, nil); err != nil || c.out.String() != "N" {
		t.Fatalf("%q %v", c.out.String(), err)
	}
}

func FuzzNegotiate(f *testing.F) {
	f.Add(startupPacket(v30, "user", "u", "database", "d"), false)
	f.Add(append(request(sslRequestCode), startupPacket(v32, "user", "u", "_pq_.x", "y")...), false)
	f.Add(append(request(sslRequestCode), 0x16, 3, 1, 0, 5), true)
	f.Add(startupPacket(v30, "user", "u", "options", "-c a=b\\ c --x=y"), false)
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2}, false)
	conf := selfSigned(f)
	f.Fuzz(func(t *testing.T, in []byte, withTLS bool) {
		var c *tls.Config
		if withTLS {
			c = conf
		}
		conn, st, err := negotiate(&fakeConn{in: bytes.NewReader(in)}, c)
		if err == nil && st == nil {
			t.Fatal("no startup and no error")
		}
		if err != nil {
			writeError(conn, err)
		}
	})
}
