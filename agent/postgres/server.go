// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// Defaults for Options.
const (
	DefaultStartupTimeout = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// Recorder takes the handler's audit records: *audit.Recorder in the
// daemon, so records go from the protocol handler straight to the log.
type Recorder interface {
	// Record appends r and returns once it is durable. The handler
	// forwards nothing that r must precede until Record returned nil.
	Record(ctx context.Context, r *audit.Record) error
	// RecordAll appends rs (a pipeline's statement records) in their
	// order with consecutive seqs and one wait, and returns once all are
	// durable. On error the handler forwards none of the statements.
	RecordAll(ctx context.Context, rs []*audit.Record) error
	// RecordEventually appends a record of something that already
	// happened (a session end); if the log cannot take it now it is kept
	// and retried, in order.
	RecordEventually(r *audit.Record)
	// RecordAllEventually is RecordEventually for a burst (a session's
	// result records), appended together.
	RecordAllEventually(rs []*audit.Record)
}

// PolicySource gives the policy in force. The daemon swaps it on reload;
// open sessions judge their next statements by the new one.
type PolicySource interface {
	// Current returns the decision engine in force and the hash of the
	// policy it was built from (recorded with every decision).
	Current() (*policy.Engine, string)
}

// DialFunc dials the real server. The daemon's dialer marks its sockets so
// that they are not redirected back to the proxy.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Options configure NewServer.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Recorder takes the audit records. Required.
	Recorder Recorder
	// Dial dials upstream servers, for logins and cancel requests.
	// Required.
	Dial DialFunc
	// Classifier normalises and classifies statement texts. Nil means
	// sql.New with default options.
	Classifier sql.Classifier
	// StartupTimeout bounds the client's startup and authentication;
	// zero means DefaultStartupTimeout.
	StartupTimeout time.Duration
	// ConnectTimeout bounds the upstream login; zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxMessage caps a client message's body; zero means
	// DefaultMaxMessage (the server's own limit).
	MaxMessage int
	// Policy is the policy statements are judged by. Required.
	Policy PolicySource
	// Approvals holds statements that review rules send for approval;
	// shared with the API socket, where approvers decide.
	Approvals *policy.Approvals
	// Grants are the just-in-time grants in force; nil means none.
	Grants *policy.Grants
}

// Server serves PostgreSQL sessions. One Server is shared by all postgres
// targets of a daemon, because cancel requests arrive on new connections
// and must find the session they belong to.
type Server struct {
	log     *slog.Logger
	opts    Options
	cancels *cancelKeys
}

// NewServer returns a Server.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Classifier == nil {
		opts.Classifier = sql.New(sql.Options{})
	}
	if opts.StartupTimeout == 0 {
		opts.StartupTimeout = DefaultStartupTimeout
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxMessage == 0 {
		opts.MaxMessage = DefaultMaxMessage
	}
	return &Server{log: opts.Logger, opts: opts, cancels: newCancelKeys()}
}

// Session is one accepted client connection as the daemon knows it.
type Session struct {
	// Target is the target's config: client_auth and upstream.
	Target policy.Target
	// Dst is the destination the client connected to: the real server.
	Dst netip.AddrPort
	// Socket, when set, is the real server's unix socket path, which
	// the client connected to: the upstream is dialled there, not at Dst.
	Socket string
	// ServerName is the name verify-full checks the server's certificate
	// against; empty means Dst's address.
	ServerName string
	// Base carries the fields every record of the session repeats:
	// Session (the id), Target, Dst, Client, Listener and Process.
	Base audit.Record
	// Detail is added to the session.start record (the workload).
	Detail map[string]string
	// Identities are the configured named identities.
	Identities []policy.Identity
	// Verifier verifies OIDC tokens; required for client_auth oidc.
	Verifier TokenVerifier
	// PolicyHash is the hash of the policy in force, for decisions.
	PolicyHash string
	// TLS, when set, is offered to clients that ask for TLS. Nil answers
	// SSLRequest with 'N'.
	TLS *tls.Config
	// CancelOnly serves a connection the daemon could not attribute (no
	// origin): only a CancelRequest carrying a key tollgate handed out is
	// served; anything else is closed without an answer.
	CancelOnly bool
	// Masker holds the masking rules of the target; nil when none apply.
	Masker *mask.Masker

	// matched are the names of every identity the client matched, found
	// at authentication; rules, grants and masking exemptions name them.
	matched []string
}

// Stats is how a session ended.
type Stats struct {
	// Up and Down count bytes from the client and to the client.
	Up, Down int64
	// Reason says why the session ended.
	Reason string
	// Err is the error that ended it, if any.
	Err error
}

// Close reasons.
const (
	ReasonClientClosed   = "client closed"
	ReasonClientTerm     = "client terminated"
	ReasonUpstreamClosed = "upstream closed"
	ReasonShutdown       = "daemon shutdown"
	ReasonProtocol       = "protocol violation"
	ReasonAudit          = "audit log unwritable"
	ReasonAuth           = "authentication failed"
	ReasonUpstream       = "upstream login failed"
	ReasonUnsafe         = "unsafe session setting"
	ReasonClientError    = "client error"
	ReasonUpstreamError  = "upstream error"
)

// Serve serves one client connection until it ends, recording the session
// in the audit log, and closes conn. It never panics on client input.
func (s *Server) Serve(ctx context.Context, conn net.Conn, sess Session) (st Stats) {
	defer closeGracefully(conn)
	defer func() {
		if p := recover(); p != nil {
			// A bug must cost one session, never the daemon.
			s.log.Error("postgres session panicked", "session", sess.Base.Session, "panic", fmt.Sprint(p))
			st.Reason, st.Err = ReasonProtocol, fmt.Errorf("internal error: %v", p)
		}
	}()
	conn.SetDeadline(time.Now().Add(s.opts.StartupTimeout))
	c, startup, err := negotiate(conn, sess.TLS)
	if err != nil {
		// The refusal is recorded before the client hears of it, so that
		// anything the client saw is already in the log.
		s.refused(&sess, "startup", err)
		if !sess.CancelOnly {
			writeError(c, err)
		}
		return Stats{Reason: ReasonProtocol, Err: err}
	}
	if startup.Cancel != nil {
		s.serveCancel(ctx, &sess, startup)
		return Stats{Reason: "cancel request"}
	}
	if sess.CancelOnly {
		s.refused(&sess, "origin", fmt.Errorf("connection without an origin is not a cancel request: %w", ErrNotAllowed))
		return Stats{Reason: ReasonProtocol, Err: ErrNotAllowed}
	}
	ident, err := s.authenticate(ctx, c, &sess, startup)
	if err != nil {
		s.refused(&sess, "authentication", err)
		writeError(c, err)
		return Stats{Reason: ReasonAuth, Err: err}
	}
	return s.serveSession(ctx, c, &sess, startup, ident)
}

// withoutAddrs returns rec without the client and listener addresses,
// which only the session's first record carries.
func withoutAddrs(rec audit.Record) audit.Record {
	rec.Client, rec.Listener = "", ""
	return rec
}

// refused records a connection refused before its session started.
// Clients that hang up silently (port probes) are logged, not recorded.
func (s *Server) refused(sess *Session, phase string, err error) {
	var e *Error
	if errors.As(err, &e) && e.Code == "" && errors.Is(err, io.EOF) {
		s.log.Debug("client closed during startup", "session", sess.Base.Session)
		return
	}
	r := sess.Base
	r.Kind = audit.KindError
	r.Error = err.Error()
	r.Detail = map[string]string{audit.DetailProtocol: "postgres", audit.DetailPhase: phase}
	if errors.As(err, &e) && e.Code != "" {
		r.Detail[audit.DetailSQLState] = e.Code
	}
	s.log.Info("postgres connection refused", "session", sess.Base.Session, "phase", phase, "error", err)
	s.opts.Recorder.RecordEventually(&r)
}

// authenticate establishes the client's identity per the target's
// client_auth.
func (s *Server) authenticate(ctx context.Context, c net.Conn, sess *Session, st *Startup) (*audit.Identity, error) {
	switch sess.Target.ClientAuth {
	case policy.ClientAuthOIDC:
		return s.authOIDC(ctx, c, sess, st)
	case policy.ClientAuthProcess, "":
		id := &audit.Identity{Method: MethodProcess}
		if named := resolveIdentity(sess.Identities, sess.Base.Process, nil); named != nil {
			id.Name = named.Name
		}
		sess.matched = matchedIdentities(sess.Identities, sess.Base.Process, nil)
		return id, nil
	}
	return nil, fatalf(codeInvalidAuthSpec, ErrAuth, "unknown client_auth %q", sess.Target.ClientAuth)
}

// authOIDC asks for a cleartext password, which must be an OIDC ID token.
// A password in the clear is acceptable only over TLS or loopback, where
// every intercepted connection arrives.
func (s *Server) authOIDC(ctx context.Context, c net.Conn, sess *Session, st *Startup) (*audit.Identity, error) {
	if st.TLS == nil && !isLoopback(c.RemoteAddr()) {
		return nil, fatalf(codeInvalidAuthSpec, ErrAuth, "OIDC tokens are accepted only over TLS or loopback")
	}
	if sess.Verifier == nil {
		return nil, fatalf(codeInvalidAuthSpec, ErrAuth, "no OIDC issuer is configured")
	}
	req, _ := (&pgproto3.AuthenticationCleartextPassword{}).Encode(nil)
	if _, err := c.Write(req); err != nil {
		return nil, &Error{Message: "client closed during authentication", Err: err}
	}
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		// libpq without a password hangs up here, and may retry.
		return nil, &Error{Message: "client closed during authentication", Err: fmt.Errorf("read password: %w", io.EOF)}
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5]))) - 4
	if hdr[0] != 'p' || n < 1 || n > maxTokenLen {
		return nil, fatalf(codeProtocolViolation, ErrProtocol, "expected a password message")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, &Error{Message: "client closed during authentication", Err: err}
	}
	var pw pgproto3.PasswordMessage
	if err := pw.Decode(body); err != nil {
		return nil, fatalf(codeProtocolViolation, ErrProtocol, "malformed password message")
	}
	vctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	claims, err := sess.Verifier.Verify(vctx, pw.Password)
	if err != nil {
		return nil, fatalf(codeInvalidPassword, fmt.Errorf("%w: %w", ErrAuth, err),
			"OIDC token for user %q rejected: %v", st.User, err)
	}
	named := resolveIdentity(sess.Identities, sess.Base.Process, claims)
	id := &audit.Identity{Method: MethodOIDC, Issuer: claims.Issuer, Subject: claims.Subject, Groups: claims.Groups}
	if named == nil {
		// Record who it was, even though it is refused.
		sess.Base.Identity = id
		return nil, fatalf(codeInvalidAuthSpec, ErrNoIdentity, "no tollgate identity matches subject %q of issuer %s", claims.Subject, claims.Issuer)
	}
	id.Name = named.Name
	sess.matched = matchedIdentities(sess.Identities, sess.Base.Process, claims)
	return id, nil
}

// isLoopback reports whether the client is on this host: a loopback TCP
// peer or a unix socket's.
func isLoopback(a net.Addr) bool {
	if _, ok := a.(*net.UnixAddr); ok {
		return true
	}
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// dial returns the dialer of the session's upstream: its unix socket when
// it has one (whatever address pgconn derives), else TCP as pgconn asks.
func (s *Server) dial(sess *Session) DialFunc {
	if sess.Socket == "" {
		return DialFunc(s.opts.Dial)
	}
	socket := sess.Socket
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return s.opts.Dial(ctx, "unix", socket)
	}
}

// serveSession records the session start, logs in upstream, hands the
// client its session and relays it.
func (s *Server) serveSession(ctx context.Context, c net.Conn, sess *Session, st *Startup, ident *audit.Identity) Stats {
	start := time.Now()
	sess.Base.Identity = ident
	startRec := sess.Base
	startRec.Kind = audit.KindSessionStart
	startRec.Time = start.UTC()
	startRec.Detail = map[string]string{audit.DetailProtocol: "postgres", audit.DetailDatabase: st.Database, audit.DetailUser: st.User,
		audit.DetailAuth: ident.Method, audit.DetailProtocolVersion: "3." + strconv.Itoa(int(st.Minor)),
		audit.DetailUpstreamUser: sess.Target.Upstream.User, audit.DetailTLS: tlsName(st.TLS)}
	if st.ApplicationName != "" {
		startRec.Detail[audit.DetailApplicationName] = st.ApplicationName
	}
	if sess.Target.Upstream.Database != "" {
		startRec.Detail[audit.DetailUpstreamDatabase] = sess.Target.Upstream.Database
	}
	maps.Copy(startRec.Detail, sess.Detail)
	var ms *mask.Session
	if sess.Masker != nil {
		ms = sess.Masker.Session(mask.Subject{Identities: sess.matched})
		maskingDetail(ms, startRec.Detail)
	}
	sess.Base = withoutAddrs(sess.Base)
	// Nothing goes upstream, not even the login, before this is durable.
	if err := s.opts.Recorder.Record(ctx, &startRec); err != nil {
		writeError(c, fatalf(codeSystemError, fmt.Errorf("%w: %w", ErrAudit, err), "tollgate cannot record this session: refused"))
		s.log.Error("refusing session: audit log unwritable", "session", sess.Base.Session, "error", err)
		return Stats{Reason: ReasonAudit, Err: err}
	}
	end := sess.Base
	end.Kind = audit.KindSessionEnd
	finish := func(stats Stats) Stats {
		end.Time = time.Now().UTC()
		end.DurationNS = time.Since(start).Nanoseconds()
		end.CloseReason = stats.Reason
		end.Bytes = &audit.Bytes{Up: uint64(stats.Up), Down: uint64(stats.Down)}
		if stats.Err != nil {
			end.Error = stats.Err.Error()
		}
		s.opts.Recorder.RecordEventually(&end)
		return stats
	}

	host := sess.ServerName
	if host == "" {
		host = sess.Dst.Addr().Unmap().String()
	}
	up, err := dialUpstream(ctx, sess.Target, sess.Dst, host, st, s.dial(sess), s.opts.ConnectTimeout)
	if err != nil {
		ue := upstreamError(err)
		s.log.Warn("upstream login failed", "session", sess.Base.Session, "dst", sess.Dst.String(), "error", err)
		writeError(c, ue)
		return finish(Stats{Reason: ReasonUpstream, Err: ue})
	}
	defer up.conn.Close()
	if err := checkParams(up.params); err != nil {
		writeError(c, err)
		return finish(Stats{Reason: ReasonUnsafe, Err: err})
	}

	// The session speaks what the server agreed to, never more.
	st.Minor = up.minor
	ct := &cancelTarget{session: sess.Base.Session, dst: sess.Dst, dial: s.dial(sess), tls: up.tls, pid: up.pid, realKey: up.secretKey}
	clientKey := s.cancels.add(ct, st.Minor)
	defer s.cancels.remove(ct)

	// The client's view of the login: what the server said, with
	// tollgate's cancel key.
	hello := negotiation(st)
	hello, _ = (&pgproto3.AuthenticationOk{}).Encode(hello)
	for _, k := range slices.Sorted(maps.Keys(up.params)) {
		hello, _ = (&pgproto3.ParameterStatus{Name: k, Value: up.params[k]}).Encode(hello)
	}
	for _, n := range up.notices {
		hello = append(hello, noticeMessage(n)...)
	}
	hello, _ = (&pgproto3.BackendKeyData{ProcessID: up.pid, SecretKey: clientKey}).Encode(hello)
	hello, _ = (&pgproto3.ReadyForQuery{TxStatus: up.txStatus}).Encode(hello)
	if _, err := c.Write(hello); err != nil {
		return finish(Stats{Reason: ReasonClientClosed, Err: err})
	}
	c.SetDeadline(time.Time{})
	keepAlive(c)
	keepAlive(up.conn)

	r := newRelay(s, sess, c, up.conn)
	if v, ok := up.params["standard_conforming_strings"]; ok {
		r.scsOff = !isOn(v)
	}
	r.enc, _ = codecFor(up.params["client_encoding"]) // checked by checkParams
	r.idents = sess.matched
	r.holds = &ct.hold
	if ms != nil && ms.Active() {
		cat := newCatalog(func(ctx context.Context) (*pgconn.PgConn, error) {
			return s.catalogConn(ctx, sess, host, st)
		})
		defer cat.close()
		r.mk = &maskState{sess: ms, cat: cat}
	}
	return finish(r.run(ctx))
}

// checkParams fails closed when the session's statement text is in an
// encoding tollgate cannot read (PostgreSQL has none such today).
func checkParams(params map[string]string) error {
	if v, ok := params["client_encoding"]; ok {
		if _, known := codecFor(v); !known {
			return fatalf(codeFeatureUnsupported, ErrNotAllowed, "client_encoding %s is not supported through tollgate", v)
		}
	}
	return nil
}

func tlsName(st *tls.ConnectionState) string {
	if st == nil {
		return "none"
	}
	return tls.VersionName(st.Version)
}

// closeGracefully closes a client connection so that a final error message
// is delivered: shutting down the write side first and reading what the
// client still sends (briefly) avoids the reset a close with unread data
// causes, which can destroy the message in flight.
func closeGracefully(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok && cw.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.CopyN(io.Discard, c, 1<<20)
	}
	c.Close()
}

func keepAlive(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(30 * time.Second)
	}
}

// serveCancel maps a client's cancel key to the real one and sends the
// cancel upstream. Like the server, it never answers the client.
func (s *Server) serveCancel(ctx context.Context, sess *Session, st *Startup) {
	t := s.cancels.lookup(st.Cancel.ProcessID, st.Cancel.SecretKey)
	if t == nil {
		r := sess.Base
		r.Kind = audit.KindError
		r.Error = "cancel request matches no session"
		r.Detail = map[string]string{audit.DetailProtocol: "postgres", audit.DetailRequest: "cancel"}
		s.opts.Recorder.RecordEventually(&r)
		return
	}
	start := time.Now()
	rec := sess.Base
	rec.Kind = audit.KindSessionStart
	rec.Detail = map[string]string{audit.DetailProtocol: "postgres", audit.DetailRequest: "cancel", audit.DetailCancels: t.session, audit.DetailTLS: tlsName(st.TLS)}
	if err := s.opts.Recorder.Record(ctx, &rec); err != nil {
		s.log.Error("dropping cancel request: audit log unwritable", "session", sess.Base.Session, "error", err)
		return
	}
	end := sess.Base
	end.Kind = audit.KindSessionEnd
	if t.hold.cancelHold() {
		// The statement is held by tollgate, not running on the
		// server: the hold ends, and the client gets 57014 from it.
		end.DurationNS = time.Since(start).Nanoseconds()
		end.CloseReason = "held statement cancelled"
		s.opts.Recorder.RecordEventually(&end)
		return
	}
	err := sendCancel(ctx, t.dial, t.dst, t.tls, t.pid, t.realKey)
	end.DurationNS = time.Since(start).Nanoseconds()
	end.CloseReason = "cancel request sent"
	if err != nil {
		end.CloseReason = "cancel request failed"
		end.Error = err.Error()
	}
	s.opts.Recorder.RecordEventually(&end)
}
