// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/internal/rawio"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
)

// Defaults for Options.
const (
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultConnectTimeout   = 10 * time.Second
)

// serverVersion is the proxy's SSH identification string. It does not
// pretend to be the target's sshd: a client's compatibility quirks are
// keyed on the version it reads, and the proxy has none of OpenSSH's bugs.
const serverVersion = "SSH-2.0-tollgate"

// Close reasons reported in Stats and session.end records.
const (
	ReasonClientClosed = "client closed"
	ReasonTargetClosed = "target closed"
	ReasonShutdown     = "daemon shutdown"
	ReasonHandshake    = "client handshake failed"
	ReasonUpstream     = "target login failed"
	ReasonAudit        = "audit log unwritable"
)

// Errors.
var (
	// ErrAudit means a record that must precede forwarding could not be
	// made durable; the session is ended (fail closed).
	ErrAudit = errors.New("audit log unwritable")
	// ErrHostKey means the target's host key did not verify against the
	// target's known_hosts.
	ErrHostKey = errors.New("target host key not trusted")
)

// Recorder takes the handler's audit records.
type Recorder interface {
	// Record appends r and returns once it is durable. The handler
	// forwards nothing that r must precede until Record returned nil.
	Record(ctx context.Context, r *audit.Record) error
	// RecordEventually appends a record of something that already
	// happened; if the log cannot take it now it is kept and retried.
	RecordEventually(r *audit.Record)
}

// PolicySource gives the policy in force; the daemon swaps it on reload.
type PolicySource interface {
	// Current returns the decision engine and the hash of its policy.
	Current() (*policy.Engine, string)
}

// TokenVerifier verifies OIDC ID tokens (the daemon's, shared with the
// PostgreSQL handler).
type TokenVerifier interface {
	// Verify checks the token's signature, issuer, audience and expiry
	// and returns its claims. Errors never contain the token.
	Verify(ctx context.Context, rawToken string) (*policy.Claims, error)
}

// maxTokenLen bounds a token given as a password; ID tokens are a few
// kilobytes.
const maxTokenLen = 64 << 10

// DialFunc dials the real target with a socket that is not redirected.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Options configure NewServer.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Recorder takes the audit records. Required.
	Recorder Recorder
	// Dial dials targets. Required.
	Dial DialFunc
	// Policy judges requests. Required.
	Policy PolicySource
	// Approvals holds exec requests that review rules send for approval.
	Approvals *policy.Approvals
	// Grants are the just-in-time grants in force; nil means none.
	Grants *policy.Grants
	// CA signs the proxy's host certificates and the target logins.
	// Required.
	CA *CA
	// HandshakeTimeout bounds the client's handshake and authentication;
	// zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds the target login; zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// Server serves SSH sessions for the daemon's ssh targets.
type Server struct {
	log  *slog.Logger
	opts Options
	// hostKey is the key under the proxy's host certificates. It lives
	// as long as the daemon: clients trust the CA, not the key.
	hostKey ssh.Signer
}

// NewServer returns a Server.
func NewServer(opts Options) (*Server, error) {
	if opts.Recorder == nil || opts.Dial == nil || opts.Policy == nil || opts.CA == nil {
		return nil, errors.New("ssh server: Recorder, Dial, Policy and CA are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	hk, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	return &Server{log: opts.Logger, opts: opts, hostKey: hk}, nil
}

// Session is one accepted client connection as the daemon knows it.
type Session struct {
	// Target is the target's config.
	Target policy.Target
	// Dst is where the proxy dials; Base.Dst is what the client asked for.
	Dst netip.AddrPort
	// Base carries the fields every record of the session repeats:
	// Session, Target, Dst, Client, Listener, Process.
	Base audit.Record
	// Detail is added to the session.start record (the workload).
	Detail map[string]string
	// Identities are the configured identities.
	Identities []policy.Identity
	// Verifier verifies the tokens of a target with client_auth oidc;
	// nil when no issuer is configured.
	Verifier TokenVerifier
	// Masker, when set, masks what its detectors and patterns find in the
	// recorded bytes and commands (not in what the client receives).
	Masker *mask.Masker
}

// Stats is what a finished session reports.
type Stats struct {
	// Reason says why the session ended.
	Reason string
	// Up and Down count channel bytes from the client and to it.
	Up, Down int64
}

// Serve runs one session until the client or the target ends it or ctx is
// cancelled. It closes c.
func (s *Server) Serve(ctx context.Context, c net.Conn, sess Session) Stats {
	defer c.Close()
	start := time.Now()
	conn := &session{s: s, sess: sess, start: start, remoteFwds: map[string]bool{}}

	cfg, err := s.serverConfig(sess, conn)
	if err != nil {
		s.log.Error("ssh server config", "session", sess.Base.Session, "error", err)
		return Stats{Reason: ReasonHandshake}
	}
	deadline := time.Now().Add(s.opts.HandshakeTimeout)
	c.SetDeadline(deadline)
	// Raw system calls on plain sockets: see internal/rawio. The cipher
	// offered is the proxy's choice among the client's: see greet.
	gc, algos, err := greet(rawio.Wrap(c), serverVersion, deadline)
	if err != nil {
		s.log.Info("ssh client handshake failed", "session", sess.Base.Session, "target", sess.Target.Name,
			"client", sess.Base.Client, "error", err)
		return Stats{Reason: ReasonHandshake}
	}
	cfg.Ciphers = offerCiphers(targetCiphers(sess.Target), algos)
	sc, chans, reqs, err := ssh.NewServerConn(gc, cfg)
	if err != nil {
		// Nothing reached the target; a failed handshake (a client that
		// does not trust the host CA, a port scan) is an operational
		// message, not a session.
		s.log.Info("ssh client handshake failed", "session", sess.Base.Session, "target", sess.Target.Name,
			"client", sess.Base.Client, "error", err)
		return Stats{Reason: ReasonHandshake}
	}
	c.SetDeadline(time.Time{})
	conn.client = sc
	conn.clientUser = sc.User()
	if sc.Permissions != nil {
		conn.clientKey = sc.Permissions.Extensions["key"]
	}
	conn.identify()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn.ctx = ctx

	// The session is recorded before the target sees a login: whoever
	// reads the target's auth log finds the session here first.
	if err := conn.recordStart(); err != nil {
		s.log.Error("refusing ssh session: audit log unwritable", "session", sess.Base.Session, "error", err)
		sc.Close()
		return Stats{Reason: ReasonAudit}
	}
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()

	up, upChans, upReqs, err := s.login(ctx, sess, conn)
	if err != nil {
		conn.refuseAll(chans, reqs, err)
		return conn.end(ReasonUpstream, err)
	}
	conn.up = up
	stopUp := context.AfterFunc(ctx, func() { up.Close() })
	defer stopUp()

	go ssh.DiscardRequests(upReqs)
	conn.wg.Add(2)
	go func() { defer conn.wg.Done(); conn.globalRequests(reqs) }()
	go func() { defer conn.wg.Done(); conn.upstreamChannels(upChans) }()

	reason := make(chan string, 2)
	go func() {
		for nc := range chans {
			conn.wg.Add(1)
			go func() { defer conn.wg.Done(); conn.channel(nc) }()
		}
		reason <- ReasonClientClosed
	}()
	go func() {
		up.Wait()
		reason <- ReasonTargetClosed
	}()
	var why string
	select {
	case why = <-reason:
	case <-ctx.Done():
		why = ReasonShutdown
	}
	// Ends what waits on the session too: a command held for approval
	// whose client is gone is cancelled, not left to time out.
	cancel()
	sc.Close()
	up.Close()
	conn.wg.Wait()
	return conn.end(why, nil)
}

// serverConfig is the client-facing configuration: the host certificate
// for the names the client may have dialled, and authentication that
// accepts the client's own key (recorded, not trusted: identity comes from
// the kernel) or no key at all through an empty keyboard-interactive round.
func (s *Server) serverConfig(sess Session, conn *session) (*ssh.ServerConfig, error) {
	signer, err := s.opts.CA.hostSigner(s.hostKey, principals(sess))
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ServerConfig{
		ServerVersion: serverVersion,
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return &ssh.Permissions{Extensions: map[string]string{"key": ssh.FingerprintSHA256(key)}}, nil
		},
		KeyboardInteractiveCallback: func(_ ssh.ConnMetadata, ch ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			if _, err := ch("", "", nil, nil); err != nil {
				return nil, err
			}
			return &ssh.Permissions{Extensions: map[string]string{"key": "none"}}, nil
		},
	}
	if sess.Target.ClientAuth == policy.ClientAuthOIDC {
		s.tokenAuth(cfg, sess, conn)
	}
	cfg.AddHostKey(signer)
	return cfg, nil
}

// targetCiphers are the ciphers a target's clients may use, in the
// proxy's order of preference.
func targetCiphers(t policy.Target) []string {
	if len(t.Ciphers) > 0 {
		return t.Ciphers
	}
	return policy.DefaultSSHCiphers
}

// tokenAuth makes the client prove who it is with an OIDC ID token, given
// as the password (sshpass, SSH_ASKPASS) or as the answer to a
// keyboard-interactive prompt. The key a client offers first is refused,
// so that it moves on to the token, and its fingerprint recorded.
func (s *Server) tokenAuth(cfg *ssh.ServerConfig, sess Session, conn *session) {
	offered := "none"
	cfg.PublicKeyCallback = func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		offered = ssh.FingerprintSHA256(key)
		return nil, errors.New("this target takes an OIDC ID token as the password")
	}
	verify := func(token string) (*ssh.Permissions, error) {
		if sess.Verifier == nil {
			return nil, &ssh.BannerError{Err: errors.New("no OIDC issuer configured"), Message: "tollgate: no OIDC issuer is configured\n"}
		}
		if len(token) > maxTokenLen {
			return nil, &ssh.BannerError{Err: errors.New("token too long"), Message: "tollgate: the password is not an OIDC ID token\n"}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := sess.Verifier.Verify(ctx, strings.TrimSpace(token))
		if err != nil {
			return nil, &ssh.BannerError{Err: err, Message: "tollgate: token refused: " + err.Error() + "\n"}
		}
		conn.claims = c
		return &ssh.Permissions{Extensions: map[string]string{"key": offered}}, nil
	}
	cfg.PasswordCallback = func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		return verify(string(pw))
	}
	cfg.KeyboardInteractiveCallback = func(_ ssh.ConnMetadata, ch ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
		ans, err := ch("", "tollgate: give an OIDC ID token", []string{"Token: "}, []bool{false})
		if err != nil {
			return nil, err
		}
		if len(ans) != 1 {
			return nil, errors.New("one answer expected")
		}
		return verify(ans[0])
	}
}

// principals are the names a host certificate is valid for: the address
// the client connected to and every host name of the target's match list,
// since the client may have dialled any of them.
func principals(sess Session) []string {
	out := []string{}
	if dst, err := netip.ParseAddrPort(sess.Base.Dst); err == nil {
		out = append(out, dst.Addr().Unmap().String())
	}
	if ms, err := sess.Target.Matches(); err == nil {
		for _, m := range ms {
			if m.Host != "" && !contains(out, m.Host) {
				out = append(out, m.Host)
			}
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// login dials the target and logs in as the configured user with a
// per-session certificate (or the configured key), after verifying the
// target's host key against the configured known_hosts.
func (s *Server) login(ctx context.Context, sess Session, conn *session) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	u := sess.Target.Upstream
	var signer ssh.Signer
	var err error
	if u.KeyFile != "" {
		signer, err = loadKeyFile(u.KeyFile)
	} else {
		signer, err = s.opts.CA.userSigner(u.User, conn.keyID())
	}
	if err != nil {
		return nil, nil, nil, err
	}
	hostKeys, algos, err := hostKeyCheck(u.KnownHosts, sess.Dst.String())
	if err != nil {
		return nil, nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, s.opts.ConnectTimeout)
	defer cancel()
	nc, err := s.opts.Dial(dctx, "tcp", sess.Dst.String())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dial %s: %w", sess.Dst, err)
	}
	if dl, ok := dctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	cfg := &ssh.ClientConfig{
		User:              u.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: algos,
		Timeout:           s.opts.ConnectTimeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(rawio.Wrap(nc), sess.Dst.String(), cfg)
	if err != nil {
		nc.Close()
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			return nil, nil, nil, fmt.Errorf("%w: %s does not match %s", ErrHostKey, sess.Dst, u.KnownHosts)
		}
		return nil, nil, nil, fmt.Errorf("log in to %s as %s: %w", sess.Dst, u.User, err)
	}
	nc.SetDeadline(time.Time{})
	return c, chans, reqs, nil
}

// hostKeyCheck returns the callback that verifies the target's host key
// and the host key algorithms to ask for. The algorithms are those of the
// keys known_hosts lists for the address (else the server could present a
// key of another type, which is not in the file and would be refused), or
// certificate algorithms when only an @cert-authority line covers it.
func hostKeyCheck(file, addr string) (ssh.HostKeyCallback, []string, error) {
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts %s: %w", file, err)
	}
	// A probe with a key that cannot be in the file lists the known keys.
	_, probe, _ := ed25519.GenerateKey(rand.Reader)
	pk, _ := ssh.NewSignerFromKey(probe)
	tcp := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))
	var algos []string
	var ke *knownhosts.KeyError
	if err := cb(knownhosts.Normalize(addr), tcp, pk.PublicKey()); errors.As(err, &ke) {
		for _, k := range ke.Want {
			algos = append(algos, keyAlgos(k.Key.Type())...)
		}
	}
	if len(algos) == 0 {
		algos = []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
			ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
	}
	return cb, algos, nil
}

// keyAlgos are the signature algorithms a host key of type t is used with.
func keyAlgos(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{t}
}

// loadKeyFile reads a root-only private key.
func loadKeyFile(path string) (ssh.Signer, error) {
	if err := CheckKeyFile(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return s, nil
}

// session is one client connection and its target login.
type session struct {
	s     *Server
	sess  Session
	start time.Time
	ctx   context.Context

	client     *ssh.ServerConn
	up         ssh.Conn
	clientUser string
	clientKey  string
	claims     *policy.Claims // the verified token of a client_auth oidc target

	ident  *policy.Identity
	idents []string
	masks  *mask.Session // nil: nothing is masked

	nextChannel atomic.Int64
	upBytes     atomic.Int64
	downBytes   atomic.Int64
	wg          sync.WaitGroup

	mu sync.Mutex
	// Upstream-initiated channels are relayed only after the client
	// asked for them and policy allowed it.
	agentOK, x11OK bool
	remoteFwds     map[string]bool // "addr:port" of allowed tcpip-forward
}

// identify names the client: from its verified token on a client_auth
// oidc target, else from its process as the kernel gave it.
func (c *session) identify() {
	p := c.sess.Base.Process
	if p == nil {
		p = &audit.Process{}
	}
	var ids []*policy.Identity
	rec := &audit.Identity{Method: "process"}
	if c.claims != nil {
		ids = policy.TokenIdentities(c.sess.Identities, c.claims, p.UID, p.Exe, p.Cgroup)
		rec = &audit.Identity{Method: "oidc", Issuer: c.claims.Issuer, Subject: c.claims.Subject, Groups: c.claims.Groups}
	} else {
		ids = policy.ProcessIdentities(c.sess.Identities, p.UID, p.Exe, p.Cgroup)
	}
	for _, id := range ids {
		c.idents = append(c.idents, id.Name)
	}
	if len(ids) > 0 {
		c.ident = ids[0]
		rec.Name = ids[0].Name
	}
	c.sess.Base.Identity = rec
	if c.sess.Masker != nil {
		if ms := c.sess.Masker.Session(mask.Subject{Identities: c.idents}); ms.Active() {
			c.masks = ms
		}
	}
}

// masked returns text with what the masking detectors find masked, for a
// record, and how many values were masked.
func (c *session) masked(text string) (string, int) {
	if c.masks == nil {
		return text, 0
	}
	return c.masks.MaskText(text)
}

// keyID is the user certificate's key id, which the target's sshd logs:
// who (identity, process) and which session, so the target's own log
// leads to the records.
func (c *session) keyID() string {
	name := "unidentified"
	if c.ident != nil {
		name = c.ident.Name
	}
	var b strings.Builder
	b.WriteString("tollgate identity=" + name + " session=" + c.sess.Base.Session + " target=" + c.sess.Target.Name)
	if p := c.sess.Base.Process; p != nil {
		b.WriteString(" pid=" + strconv.FormatUint(uint64(p.Pid), 10) + " uid=" + strconv.FormatUint(uint64(p.UID), 10))
		if p.Comm != "" {
			b.WriteString(" comm=" + strings.ReplaceAll(p.Comm, " ", "_"))
		}
	}
	return b.String()
}

func (c *session) recordStart() error {
	r := c.sess.Base
	r.Kind = audit.KindSessionStart
	// Stamped when written, after the client's handshake and login (which
	// may wait for a person): the log never stamps a record before the
	// one before it. The session's duration_ns counts from the connect.
	r.Detail = map[string]string{audit.DetailProtocol: string(policy.ProtocolSSH), "client_user": c.clientUser,
		"client_key": c.clientKey, "login": c.sess.Target.Upstream.User}
	for k, v := range c.sess.Detail {
		r.Detail[k] = v
	}
	if c.sess.Target.Upstream.KeyFile == "" {
		r.Detail["key_id"] = c.keyID()
	}
	if err := c.s.opts.Recorder.Record(context.Background(), &r); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return nil
}

// end records session.end and returns the session's stats.
func (c *session) end(reason string, err error) Stats {
	r := c.sess.Base
	r.Kind = audit.KindSessionEnd
	r.Time = time.Now().UTC()
	r.DurationNS = time.Since(c.start).Nanoseconds()
	r.CloseReason = reason
	st := Stats{Reason: reason, Up: c.upBytes.Load(), Down: c.downBytes.Load()}
	r.Bytes = &audit.Bytes{Up: uint64(st.Up), Down: uint64(st.Down)}
	if err != nil {
		r.Error = err.Error()
	}
	c.s.opts.Recorder.RecordEventually(&r)
	return st
}

// refuseAll answers a client whose target login failed: each channel it
// opens is refused with the reason, which OpenSSH prints ("channel 0: open
// failed: connect failed: ..."), until it disconnects.
func (c *session) refuseAll(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, err error) {
	c.s.log.Warn("ssh target login failed", "session", c.sess.Base.Session, "target", c.sess.Target.Name, "error", err)
	go ssh.DiscardRequests(reqs)
	msg := "tollgate: cannot log in to target " + c.sess.Target.Name + ": " + err.Error()
	timer := time.AfterFunc(c.s.opts.HandshakeTimeout, func() { c.client.Close() })
	defer timer.Stop()
	for nc := range chans {
		nc.Reject(ssh.ConnectionFailed, msg)
	}
}

// decide judges one request by the policy in force.
func (c *session) decide(req policy.Request) (policy.Decision, string) {
	eng, hash := c.s.opts.Policy.Current()
	if eng == nil {
		return policy.Decision{Action: policy.ActionDeny, Reason: "no policy loaded"}, hash
	}
	req.Identities = c.idents
	req.Target = c.sess.Target.Name
	if c.s.opts.Grants != nil {
		req.Grants = c.s.opts.Grants.Active(c.idents, c.sess.Target.Name, time.Now())
	}
	return eng.Decide(req), hash
}

// person is the session's requester as approvals see it.
func (c *session) person() policy.Person {
	p := policy.Person{Identities: c.idents}
	if c.ident != nil {
		p.Name = c.ident.Name
	}
	if c.claims != nil {
		p.Issuer, p.Subject, p.Groups = c.claims.Issuer, c.claims.Subject, c.claims.Groups
	}
	return p
}
