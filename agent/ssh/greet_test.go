// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tollgate-dev/tollgate/policy"
)

// kexInitMsg is RFC 4253's SSH_MSG_KEXINIT in x/crypto's wire encoding,
// to build packets and to check parseKexInit against ssh.Unmarshal.
type kexInitMsg struct {
	Cookie                  [16]byte `sshtype:"20"`
	KexAlgos                []string
	ServerHostKeyAlgos      []string
	CiphersClientServer     []string
	CiphersServerClient     []string
	MACsClientServer        []string
	MACsServerClient        []string
	CompressionClientServer []string
	CompressionServerClient []string
	LanguagesClientServer   []string
	LanguagesServerClient   []string
	FirstKexFollows         bool
	Reserved                uint32
}

// rawPacket frames payload as an unencrypted binary packet.
func rawPacket(payload []byte) []byte {
	pad := 16 - (5+len(payload))%16
	if pad < 4 {
		pad += 16
	}
	n := 1 + len(payload) + pad
	p := []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), byte(pad)}
	p = append(p, payload...)
	return append(p, make([]byte, pad)...)
}

func kexInitPacket(c2s, s2c []string) []byte {
	return rawPacket(ssh.Marshal(&kexInitMsg{KexAlgos: []string{"curve25519-sha256"}, ServerHostKeyAlgos: []string{"ssh-ed25519"},
		CiphersClientServer: c2s, CiphersServerClient: s2c, MACsClientServer: []string{"hmac-sha2-256"},
		MACsServerClient: []string{"hmac-sha2-256"}, CompressionClientServer: []string{"none"}, CompressionServerClient: []string{"none"}}))
}

func TestParseKexInit(t *testing.T) {
	openssh := []string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	got, err := parseKexInit(kexInitPacket(openssh, []string{"aes256-ctr"}))
	if err != nil || !slices.Equal(got.ciphersC2S, openssh) || !slices.Equal(got.ciphersS2C, []string{"aes256-ctr"}) {
		t.Fatalf("parseKexInit = %+v, %v", got, err)
	}
	good := kexInitPacket(openssh, openssh)
	for name, p := range map[string][]byte{
		"empty":          nil,
		"short":          good[:4],
		"truncated":      good[:len(good)-1],
		"padding > size": append([]byte{0, 0, 0, 4, 9}, make([]byte, 3)...),
		"not KEXINIT":    rawPacket([]byte{21}),
		"no cookie":      rawPacket([]byte{20, 1, 2}),
		"list overflows": rawPacket(append(append([]byte{20}, make([]byte, 16)...), 0xff, 0xff, 0xff, 0xff)),
	} {
		if got, err := parseKexInit(p); !errors.Is(err, errNotKexInit) {
			t.Errorf("%s: parseKexInit = %+v, %v; want errNotKexInit", name, got, err)
		}
	}
}

// FuzzParseKexInit checks parseKexInit against x/crypto's own decoding:
// it never panics, and where x/crypto reads a KEXINIT it reads the same
// cipher lists.
func FuzzParseKexInit(f *testing.F) {
	f.Add(kexInitPacket([]string{"aes128-gcm@openssh.com"}, []string{"aes128-ctr", "aes256-ctr"}))
	f.Add(kexInitPacket(nil, nil))
	f.Add(rawPacket([]byte{20}))
	f.Fuzz(func(t *testing.T, p []byte) {
		got, err := parseKexInit(p)
		if len(p) < 5 {
			return
		}
		n, pad := int(uint32(p[0])<<24|uint32(p[1])<<16|uint32(p[2])<<8|uint32(p[3])), int(p[4])
		if n < pad+1 || len(p) < 4+n {
			if err == nil {
				t.Fatalf("parsed a packet whose lengths do not fit: %+v", got)
			}
			return
		}
		var m kexInitMsg
		if ssh.Unmarshal(p[5:4+n-pad], &m) != nil {
			return
		}
		if err != nil || !slices.Equal(got.ciphersC2S, m.CiphersClientServer) || !slices.Equal(got.ciphersS2C, m.CiphersServerClient) {
			t.Fatalf("parseKexInit = %+v, %v; x/crypto read %q and %q", got, err, m.CiphersClientServer, m.CiphersServerClient)
		}
	})
}

func TestOfferCiphers(t *testing.T) {
	openssh := &kexAlgos{
		ciphersC2S: []string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes128-gcm@openssh.com"},
		ciphersS2C: []string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes128-gcm@openssh.com"},
	}
	for _, tt := range []struct {
		name   string
		target []string
		algos  *kexAlgos
		want   []string
	}{
		{"server's preference", policy.DefaultSSHCiphers, openssh, []string{"aes128-gcm@openssh.com"}},
		{"target's order", []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"}, openssh, []string{"chacha20-poly1305@openssh.com"}},
		{"ctr-only client", policy.DefaultSSHCiphers, &kexAlgos{ciphersC2S: []string{"aes256-ctr"}, ciphersS2C: []string{"aes256-ctr"}}, []string{"aes256-ctr"}},
		{"both ways", policy.DefaultSSHCiphers, &kexAlgos{ciphersC2S: []string{"aes128-gcm@openssh.com", "aes128-ctr"}, ciphersS2C: []string{"aes128-ctr"}}, []string{"aes128-ctr"}},
		{"none in common", []string{"aes256-gcm@openssh.com"}, openssh, []string{"aes256-gcm@openssh.com"}},
		{"no KEXINIT read", policy.DefaultSSHCiphers, nil, policy.DefaultSSHCiphers},
	} {
		if got := offerCiphers(tt.target, tt.algos); !slices.Equal(got, tt.want) {
			t.Errorf("%s: offerCiphers = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// handshake runs greet and x/crypto's server on one end of a loopback TCP
// connection and x/crypto's client, with ciphers, on the other, through
// wrap when set. It returns what greet read and the handshake's errors.
func handshake(t *testing.T, ciphers []string, wrap func(net.Conn) net.Conn) (*kexAlgos, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		algos   *kexAlgos
		srvErr  error
		offered []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			srvErr = err
			return
		}
		defer c.Close()
		deadline := time.Now().Add(10 * time.Second)
		c.SetDeadline(deadline)
		g, a, err := greet(c, serverVersion, deadline)
		if err != nil {
			srvErr = err
			return
		}
		algos = a
		offered = offerCiphers(policy.DefaultSSHCiphers, a)
		cfg := &ssh.ServerConfig{Config: ssh.Config{Ciphers: offered}, ServerVersion: serverVersion, NoClientAuth: true}
		cfg.AddHostKey(signer)
		sc, chans, reqs, err := ssh.NewServerConn(g, cfg)
		if err != nil {
			srvErr = err
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			nc.Reject(ssh.Prohibited, "test")
		}
		sc.Close()
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		nc = wrap(nc)
	}
	cc, _, _, cliErr := ssh.NewClientConn(nc, "127.0.0.1", &ssh.ClientConfig{
		User: "u", Config: ssh.Config{Ciphers: ciphers}, HostKeyCallback: ssh.FixedHostKey(signer.PublicKey()),
		Timeout: 10 * time.Second,
	})
	if cliErr == nil {
		if !strings.HasPrefix(string(cc.ServerVersion()), serverVersion) {
			t.Errorf("client read server version %q", cc.ServerVersion())
		}
		cc.Close()
	}
	nc.Close()
	wg.Wait()
	return algos, srvErr, cliErr
}

// TestGreet: the client's KEXINIT is read before x/crypto's server
// starts, and the handshake then completes over the replayed bytes (the
// exchange hash covers both identification strings and both KEXINITs, so
// a byte out of place fails it), with the one cipher offered.
func TestGreet(t *testing.T) {
	client := []string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-gcm@openssh.com"}
	algos, srvErr, cliErr := handshake(t, client, nil)
	if srvErr != nil || cliErr != nil {
		t.Fatalf("handshake: server %v, client %v", srvErr, cliErr)
	}
	if algos == nil || !slices.Equal(algos.ciphersC2S, client) || !slices.Equal(algos.ciphersS2C, client) {
		t.Fatalf("greet read %+v, want the client's %v", algos, client)
	}
	if got := offerCiphers(policy.DefaultSSHCiphers, algos); !slices.Equal(got, []string{"aes256-gcm@openssh.com"}) {
		t.Fatalf("offered %v", got)
	}
}

// waitingConn holds the client's first binary packet until the server's
// has arrived, as clients do that send their KEXINIT only in answer to the
// server's (JSch).
type waitingConn struct {
	net.Conn
	once     sync.Once
	arrived  chan struct{}
	writes   int
	received int
}

func (w *waitingConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.received += n
	if w.received > len(serverVersion)+2 {
		w.once.Do(func() { close(w.arrived) })
	}
	return n, err
}

func (w *waitingConn) Write(p []byte) (int, error) {
	w.writes++
	if w.writes > 1 {
		<-w.arrived
	}
	return w.Conn.Write(p)
}

func TestGreetClientWaits(t *testing.T) {
	algos, srvErr, cliErr := handshake(t, []string{"aes128-ctr"}, func(c net.Conn) net.Conn {
		return &waitingConn{Conn: c, arrived: make(chan struct{})}
	})
	if srvErr != nil || cliErr != nil {
		t.Fatalf("handshake with a client that waits for the server's KEXINIT: server %v, client %v", srvErr, cliErr)
	}
	if algos != nil {
		t.Fatalf("greet read a KEXINIT the client had not sent: %+v", algos)
	}
}

// TestGreetNotSSH: what is not SSH fails the handshake with an error and
// no panic, as x/crypto alone would.
func TestGreetNotSSH(t *testing.T) {
	for name, in := range map[string]string{
		"http":        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"no newline":  strings.Repeat("x", 100),
		"bad packet":  "SSH-2.0-x\r\n\xff\xff\xff\xff",
		"not kexinit": "SSH-2.0-x\r\n" + string(rawPacket([]byte{21})),
	} {
		a, b := net.Pipe()
		go func() {
			io.WriteString(b, in)
			b.Close()
		}()
		go io.Copy(io.Discard, b)
		deadline := time.Now().Add(5 * time.Second)
		a.SetDeadline(deadline)
		g, algos, err := greet(a, serverVersion, deadline)
		if err == nil {
			cfg := &ssh.ServerConfig{NoClientAuth: true, ServerVersion: serverVersion}
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			s, _ := ssh.NewSignerFromKey(key)
			cfg.AddHostKey(s)
			_, _, _, err = ssh.NewServerConn(g, cfg)
		}
		if err == nil || algos != nil {
			t.Errorf("%s: algos %+v, err %v; want a failed handshake", name, algos, err)
		}
		a.Close()
	}
}

// TestGreetedConnWrite: x/crypto's identification string is swallowed
// once; anything else as the first write fails closed.
func TestGreetedConnWrite(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	g := &greetedConn{Conn: a, sent: []byte("SSH-2.0-tollgate\r\n")}
	if _, err := g.Write([]byte("SSH-2.0-other\r\n")); !errors.Is(err, errGreetingWrite) {
		t.Fatalf("first write of another string: %v", err)
	}
	if n, err := g.Write([]byte("SSH-2.0-tollgate\r\n")); n != 18 || err != nil {
		t.Fatalf("identification string: %d, %v", n, err)
	}
	go g.Write([]byte("next"))
	buf := make([]byte, 8)
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("after the identification string the peer read %q, %v", buf[:n], err)
	}
}
