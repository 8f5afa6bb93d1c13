// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/internal/secretfile"
	"github.com/tollgate-dev/tollgate/policy"
)

// maxSecretFile bounds the password file; a password is short.
const maxSecretFile = 64 << 10

// CheckPasswordFile checks that path is a regular file (not a symlink)
// owned by root with no permissions for group or others, as an upstream
// password file must be. The daemon calls it when it loads the config, and
// ReadPasswordFile repeats the checks at every connect.
func CheckPasswordFile(path string) error {
	_, err := ReadPasswordFile(path)
	return err
}

// ReadPasswordFile reads an upstream password file after CheckPasswordFile's
// checks. The password is the first line, without its line ending.
func ReadPasswordFile(path string) (string, error) {
	b, err := secretfile.Read(path, maxSecretFile)
	if err != nil {
		return "", fmt.Errorf("upstream password file %s: %w: %w", path, ErrSecretFile, err)
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	pw := strings.TrimSuffix(string(line), "\r")
	if pw == "" {
		return "", fmt.Errorf("upstream password file %s: %w: empty", path, ErrSecretFile)
	}
	return pw, nil
}

// upstreamTLS returns the TLS config for an upstream sslmode, nil for
// disable. serverName is the name verify-full checks.
func upstreamTLS(u policy.Upstream, serverName string) (*tls.Config, error) {
	if u.SSLMode == policy.SSLModeDisable || u.SSLMode == "" {
		return nil, nil
	}
	var roots *x509.CertPool
	if u.SSLRootCert != "" {
		pem, err := os.ReadFile(u.SSLRootCert)
		if err != nil {
			return nil, fmt.Errorf("sslrootcert: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sslrootcert %s: no certificates", u.SSLRootCert)
		}
	}
	c := &tls.Config{ServerName: serverName, RootCAs: roots, MinVersion: tls.VersionTLS12}
	switch u.SSLMode {
	case policy.SSLModeVerifyFull:
		return c, nil
	case policy.SSLModeRequire:
		if roots == nil {
			// libpq: require without a root certificate encrypts
			// but does not verify.
			c.InsecureSkipVerify = true
			return c, nil
		}
		// libpq: require with a root certificate behaves as verify-ca.
		fallthrough
	case policy.SSLModeVerifyCA:
		c.InsecureSkipVerify = true
		c.VerifyPeerCertificate = verifyChain(roots)
		return c, nil
	}
	return nil, fmt.Errorf("unknown sslmode %q", u.SSLMode)
}

// verifyChain verifies the server's chain against roots without checking
// the host name (verify-ca).
func verifyChain(roots *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("server sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

// upstreamConn is a logged-in upstream connection taken over from pgconn.
type upstreamConn struct {
	conn      net.Conn
	pid       uint32
	secretKey []byte
	params    map[string]string
	txStatus  byte
	notices   []*pgconn.Notice
	tls       *tls.Config
	// minor is the minor protocol version the server agreed to.
	minor uint32
}

// dialUpstream logs in to the real server at dst as the target's upstream
// user and takes the connection over. host is the name the server's
// certificate is checked against. The startup parameters the client may
// set are passed on; user and password are the target's.
func dialUpstream(ctx context.Context, t policy.Target, dst netip.AddrPort, host string, st *Startup,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), timeout time.Duration) (*upstreamConn, error) {
	cfg, password, err := upstreamConfig(t, dst, host, st, dial, timeout)
	if err != nil {
		return nil, err
	}
	var notices []*pgconn.Notice
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n) }
	// Ask the server for the version the client asked for, and learn
	// whether it speaks an older one: pgconn does not tell.
	cfg.MinProtocolVersion = "3.0"
	cfg.MaxProtocolVersion = "3.0"
	if st.Minor >= 2 {
		cfg.MaxProtocolVersion = "3.2"
	}
	watch := &versionWatch{}
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		watch.r = r
		return pgproto3.NewFrontend(watch, w)
	}

	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, scrub(err, password)
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, scrub(err, password)
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, scrub(err, password)
	}
	// pgconn may have left a deadline from its context watcher.
	hc.Conn.SetDeadline(time.Time{})
	minor := uint32(0)
	if st.Minor >= 2 {
		minor = 2
	}
	if v, ok := watch.negotiated(); ok {
		minor = min(minor, v)
	}
	return &upstreamConn{conn: hc.Conn, pid: hc.PID, secretKey: hc.SecretKey, params: hc.ParameterStatuses,
		txStatus: hc.TxStatus, notices: notices, tls: hc.TLSConfig, minor: minor}, nil
}

// versionWatch reads the server's messages during the login on behalf of
// pgconn and notes the newest minor version of a NegotiateProtocolVersion,
// which the server sends when it speaks an older protocol than asked.
type versionWatch struct {
	r     io.Reader
	hdr   [5]byte
	hn    int  // header bytes seen of the current message
	left  int  // body bytes of the current message still to come
	isV   bool // the current message is a NegotiateProtocolVersion
	vbuf  [4]byte
	vn    int
	minor uint32
	seen  bool
}

func (w *versionWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.scan(p[:n])
	return n, err
}

// scan follows the message framing over b.
func (w *versionWatch) scan(b []byte) {
	for len(b) > 0 {
		if w.hn < len(w.hdr) {
			c := copy(w.hdr[w.hn:], b)
			w.hn += c
			b = b[c:]
			if w.hn == len(w.hdr) {
				w.left = int(int32(binary.BigEndian.Uint32(w.hdr[1:]))) - 4
				w.isV, w.vn = w.hdr[0] == 'v', 0
				if w.left <= 0 {
					w.hn, w.left = 0, 0 // pgconn reports a bad length
				}
			}
			continue
		}
		c := min(len(b), w.left)
		if w.isV && w.vn < len(w.vbuf) {
			w.vn += copy(w.vbuf[w.vn:], b[:c])
			if w.vn == len(w.vbuf) {
				// The server sends its whole version (3 << 16 | minor).
				w.minor, w.seen = binary.BigEndian.Uint32(w.vbuf[:])&0xffff, true
			}
		}
		w.left -= c
		b = b[c:]
		if w.left == 0 {
			w.hn = 0
		}
	}
}

// negotiated returns the newest minor version the server named, if it
// sent a NegotiateProtocolVersion.
func (w *versionWatch) negotiated() (uint32, bool) { return w.minor, w.seen }

// upstreamConfig is the pgconn config of a login to the real server at
// dst as the target's upstream user, with the client's allowed startup
// parameters, and the password it carries (to scrub from errors).
func upstreamConfig(t policy.Target, dst netip.AddrPort, host string, st *Startup,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), timeout time.Duration) (*pgconn.Config, string, error) {
	password, err := ReadPasswordFile(t.Upstream.PasswordFile)
	if err != nil {
		return nil, "", err
	}
	// An explicit sslmode=disable keeps the environment (PGSSLMODE) from
	// adding TLS configs or fallbacks; TLS is set below from the target.
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, "", fmt.Errorf("upstream config: %w", err)
	}
	cfg.Host = host
	cfg.Port = dst.Port()
	cfg.User = t.Upstream.User
	cfg.Password = password
	cfg.Database = st.Database
	if t.Upstream.Database != "" {
		cfg.Database = t.Upstream.Database
	}
	if cfg.TLSConfig, err = upstreamTLS(t.Upstream, host); err != nil {
		return nil, "", fmt.Errorf("upstream tls: %w", err)
	}
	// No fallbacks: a TLS failure must not silently retry in plaintext.
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = timeout
	ip := dst.Addr().Unmap().String()
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{ip}, nil }
	cfg.DialFunc = dial
	cfg.RuntimeParams = map[string]string{}
	for _, p := range st.Params {
		switch p.Key {
		case "user", "database", "replication":
		default:
			cfg.RuntimeParams[p.Key] = p.Value
		}
	}
	cfg.OnNotice = nil
	cfg.OnNotification = nil
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	return cfg, password, nil
}

// scrub removes the password from an error's text, in case a layer below
// ever quoted it, keeping *pgconn.PgError for the caller to inspect.
func scrub(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "[REDACTED]"))
}

// upstreamError turns a failed upstream login into what the client sees.
// The server's own errors pass through (a database that does not exist is
// reported as the server reports it), except authentication failures:
// those are tollgate's credentials, not the client's, and the client learns
// only that the login failed.
func upstreamError(err error) *Error {
	var ferr *Error
	if errors.As(err, &ferr) {
		return ferr
	}
	if errors.Is(err, ErrSecretFile) {
		return fatalf(codeConnectionRejected, fmt.Errorf("%w: %w", ErrUpstream, err),
			"tollgate cannot read its credentials for this server (see the daemon log)")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if strings.HasPrefix(pe.Code, "28") {
			return fatalf(codeConnectionRejected, fmt.Errorf("%w: %w", ErrUpstream, err),
				"the server refused tollgate's login for this target (see the daemon log)")
		}
		sev := pe.Severity
		if sev == "" {
			sev = "FATAL"
		}
		return &Error{Severity: sev, Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint,
			Err: fmt.Errorf("%w: %w", ErrUpstream, err)}
	}
	return fatalf(codeCannotConnect, fmt.Errorf("%w: %w", ErrUpstream, err), "tollgate could not connect to the server")
}

// noticeMessage encodes a notice received during the upstream login for
// replay to the client.
func noticeMessage(n *pgconn.Notice) []byte {
	m := &pgproto3.NoticeResponse{Severity: n.Severity, SeverityUnlocalized: n.SeverityUnlocalized, Code: n.Code,
		Message: n.Message, Detail: n.Detail, Hint: n.Hint, Position: n.Position, InternalPosition: n.InternalPosition,
		InternalQuery: n.InternalQuery, Where: n.Where, SchemaName: n.SchemaName, TableName: n.TableName,
		ColumnName: n.ColumnName, DataTypeName: n.DataTypeName, ConstraintName: n.ConstraintName, File: n.File,
		Line: n.Line, Routine: n.Routine}
	b, _ := m.Encode(nil)
	return b
}

// sendCancel sends a CancelRequest for the real backend key to the server,
// over TLS when the session's upstream uses TLS (the server accepts both),
// and waits for the server to close the connection, as libpq does.
func sendCancel(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	dst netip.AddrPort, tlsConf *tls.Config, pid uint32, key []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", dst.String())
	if err != nil {
		return fmt.Errorf("cancel: dial: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if tlsConf != nil {
		req := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f} // SSLRequest
		if _, err := c.Write(req); err != nil {
			return fmt.Errorf("cancel: ssl request: %w", err)
		}
		var resp [1]byte
		if _, err := io.ReadFull(c, resp[:]); err != nil {
			return fmt.Errorf("cancel: ssl response: %w", err)
		}
		if resp[0] != 'S' {
			return errors.New("cancel: server refused TLS")
		}
		tc := tls.Client(c, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("cancel: tls: %w", err)
		}
		c = tc
	}
	msg, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: key}).Encode(nil)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("cancel: write: %w", err)
	}
	io.Copy(io.Discard, c)
	return nil
}
