// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup phase constants, from the PostgreSQL protocol.
const (
	// maxStartupPacket is PostgreSQL's own cap (MAX_STARTUP_PACKET_LENGTH).
	maxStartupPacket  = 10000
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	// newestMinor is the newest 3.x protocol tollgate speaks. 3.2
	// (PostgreSQL 18) differs from 3.0 only in the length of the cancel
	// key. The client is never promised more than the upstream server
	// gives: the session speaks the minor version the server agreed to.
	newestMinor = 2
	// maxNegotiation bounds SSLRequest/GSSENCRequest rounds.
	maxNegotiation = 4
	// tlsRecordHandshake is the first byte of a TLS ClientHello record:
	// PostgreSQL 17 clients with sslnegotiation=direct start with it.
	tlsRecordHandshake = 0x16
	alpnPostgres       = "postgresql"
)

// Startup is what a client said in its startup phase.
type Startup struct {
	// Minor is the minor version of protocol 3 the session speaks: the
	// client's, capped at newestMinor, until the upstream server answers
	// the same request; then what the server agreed to.
	Minor uint32
	// Requested is the minor version the client asked for.
	Requested uint32
	// Unrecognized are the _pq_ protocol options the client asked for;
	// none is supported.
	Unrecognized []string
	// Params are the startup parameters in the order received, without
	// _pq_ options.
	Params []Param
	// User, Database, ApplicationName and Options repeat those parameters.
	User, Database, ApplicationName, Options string
	// TLS is the client connection's TLS state, nil for plaintext.
	TLS *tls.ConnectionState
	// Cancel is set, and nothing else is, when the connection carried a
	// CancelRequest instead of a startup packet.
	Cancel *pgproto3.CancelRequest
}

// Param is one startup parameter.
type Param struct{ Key, Value string }

// negotiate reads the client's startup phase from conn. It returns the
// connection to use from then on (a TLS one after a handshake) and the
// startup packet or CancelRequest. It reads only the bytes of each request
// and never more (no buffering), so bytes a client or an attacker sent
// before a TLS handshake are fed to the handshake and make it fail instead
// of being processed later as if they were encrypted.
//
// Errors are *Error; one with an empty Code means close without an answer.
func negotiate(conn net.Conn, tlsConf *tls.Config) (net.Conn, *Startup, error) {
	var tlsState *tls.ConnectionState
	for round := 0; ; round++ {
		if round >= maxNegotiation {
			return conn, nil, fatalf(codeProtocolViolation, ErrProtocol, "too many encryption negotiation requests")
		}
		var hdr [8]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return conn, nil, &Error{Message: "client closed during startup", Err: fmt.Errorf("read startup packet: %w", err)}
		}
		if hdr[0] == tlsRecordHandshake && tlsState == nil {
			if tlsConf == nil {
				// The client expects a TLS handshake; a plaintext
				// error would not be understood.
				return conn, nil, &Error{Message: "direct TLS without a TLS config", Err: fmt.Errorf("direct TLS: %w", ErrNotAllowed)}
			}
			tc, err := serverTLS(&prefixConn{Conn: conn, prefix: hdr[:]}, tlsConf)
			if err != nil {
				return conn, nil, &Error{Message: "TLS handshake failed", Err: err}
			}
			conn = tc
			st := tc.ConnectionState()
			tlsState = &st
			if st.NegotiatedProtocol != alpnPostgres {
				return conn, nil, fatalf(codeProtocolViolation, ErrProtocol, "direct TLS connection without ALPN %q", alpnPostgres)
			}
			continue
		}
		length := binary.BigEndian.Uint32(hdr[0:4])
		code := binary.BigEndian.Uint32(hdr[4:8])
		if length < 8 || length > maxStartupPacket {
			return conn, nil, fatalf(codeProtocolViolation, ErrProtocol, "invalid length of startup packet")
		}
		body := make([]byte, length-8)
		if _, err := io.ReadFull(conn, body); err != nil {
			return conn, nil, &Error{Message: "client closed during startup", Err: fmt.Errorf("read startup packet: %w", err)}
		}
		switch code {
		case sslRequestCode, gssEncRequestCode:
			if length != 8 {
				return conn, nil, fatalf(codeProtocolViolation, ErrProtocol, "invalid length of encryption request")
			}
			if tlsState != nil {
				return conn, nil, fatalf(codeProtocolViolation, ErrProtocol, "encryption requested on an encrypted connection")
			}
			if code == gssEncRequestCode || tlsConf == nil {
				// Never 'E': pgjdbc reconnects in a loop on it.
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, nil, &Error{Message: "client closed during startup", Err: err}
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, nil, &Error{Message: "client closed during startup", Err: err}
			}
			tc, err := serverTLS(conn, tlsConf)
			if err != nil {
				return conn, nil, &Error{Message: "TLS handshake failed", Err: err}
			}
			conn = tc
			st := tc.ConnectionState()
			tlsState = &st
			continue
		case cancelRequestCode:
			cr := &pgproto3.CancelRequest{}
			if err := cr.Decode(append(hdr[4:8:8], body...)); err != nil || len(body) < 8 {
				return conn, nil, &Error{Message: "malformed cancel request", Err: fmt.Errorf("cancel request: %w", ErrProtocol)}
			}
			return conn, &Startup{TLS: tlsState, Cancel: cr}, nil
		}
		major, minor := code>>16, code&0xffff
		if major != 3 {
			return conn, nil, fatalf(codeFeatureUnsupported, ErrProtocol,
				"unsupported frontend protocol %d.%d: server supports 3.0 to 3.%d", major, minor, newestMinor)
		}
		st, unrecognized, err := parseStartup(body)
		if err != nil {
			return conn, nil, err
		}
		st.TLS = tlsState
		st.Requested = minor
		st.Minor = min(minor, newestMinor)
		st.Unrecognized = unrecognized
		// NegotiateProtocolVersion, when due, is sent once the upstream
		// server said which version it speaks (see negotiation).
		return conn, st, nil
	}
}

// negotiation returns the NegotiateProtocolVersion the client is owed, or
// nil: when the session speaks an older minor version than the client
// asked for (capped by tollgate or by the upstream server), or when the
// client asked for _pq_ options, none of which is supported. A server
// would send it at once; tollgate sends it before AuthenticationOk, once
// the upstream server answered, which clients accept at any point of the
// startup phase.
func negotiation(st *Startup) []byte {
	if st.Requested <= st.Minor && len(st.Unrecognized) == 0 {
		return nil
	}
	// The server sends its whole newest version, 3 << 16 | minor, and
	// libpq compares it with the whole version it asked for.
	b, _ := (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 3<<16 | st.Minor, UnrecognizedOptions: st.Unrecognized}).Encode(nil)
	return b
}

// serverTLS runs the server side of a TLS handshake. ALPN "postgresql" is
// offered as PostgreSQL 17 does.
func serverTLS(conn net.Conn, conf *tls.Config) (*tls.Conn, error) {
	c := conf.Clone()
	c.NextProtos = []string{alpnPostgres}
	tc := tls.Server(conn, c)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// prefixConn replays bytes already read before the connection's own.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// parseStartup parses the parameters of a protocol 3 startup packet (body
// is what follows the version) and checks them. It returns the _pq_
// options separately: none is supported, so they are reported back in
// NegotiateProtocolVersion.
func parseStartup(body []byte) (*Startup, []string, error) {
	st := &Startup{}
	var unrecognized []string
	rest := body
	for {
		key, r, ok := cstring(rest)
		if !ok {
			return nil, nil, fatalf(codeProtocolViolation, ErrProtocol, "invalid startup packet layout: expected terminator as last byte")
		}
		if key == "" {
			if len(r) != 0 {
				return nil, nil, fatalf(codeProtocolViolation, ErrProtocol, "invalid startup packet layout: expected terminator as last byte")
			}
			break
		}
		val, r, ok := cstring(r)
		if !ok {
			return nil, nil, fatalf(codeProtocolViolation, ErrProtocol, "invalid startup packet layout: expected terminator as last byte")
		}
		rest = r
		if strings.HasPrefix(key, "_pq_.") {
			unrecognized = append(unrecognized, key)
			continue
		}
		if err := checkStartupParam(key, val); err != nil {
			return nil, nil, err
		}
		st.Params = setParam(st.Params, key, val)
		switch key {
		case "user":
			st.User = val
		case "database":
			st.Database = val
		case "application_name":
			st.ApplicationName = val
		case "options":
			st.Options = val
		}
	}
	if st.User == "" {
		return nil, nil, fatalf(codeInvalidAuthSpec, ErrProtocol, "no PostgreSQL user name specified in startup packet")
	}
	return st, unrecognized, nil
}

// setParam sets key in ps, replacing an earlier value (the server keeps the
// last one too).
func setParam(ps []Param, key, val string) []Param {
	for i := range ps {
		if ps[i].Key == key {
			ps[i].Value = val
			return ps
		}
	}
	return append(ps, Param{key, val})
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// allowedGUCs are the settings a client may set in its startup packet (or
// with -c in options). They change formatting, timeouts and planner
// behaviour of the client's own session; settings that change who the
// session acts as (role, session_authorization), disable triggers
// (session_replication_role) are not here. standard_conforming_strings
// off is followed (see relay.classify).
var allowedGUCs = map[string]bool{
	"application_name": true, "client_encoding": true, "datestyle": true, "timezone": true,
	"intervalstyle": true, "extra_float_digits": true, "search_path": true, "statement_timeout": true,
	"lock_timeout": true, "idle_in_transaction_session_timeout": true, "idle_session_timeout": true,
	"default_transaction_isolation": true, "default_transaction_read_only": true,
	"default_transaction_deferrable": true, "bytea_output": true, "lc_messages": true, "lc_monetary": true,
	"lc_numeric": true, "lc_time": true, "geqo": true, "jit": true, "work_mem": true,
	"maintenance_work_mem": true, "temp_buffers": true, "synchronous_commit": true,
	"standard_conforming_strings": true, "timezone_abbreviations": true, "xmlbinary": true, "xmloption": true,
	"client_min_messages": true, "default_text_search_config": true, "random_page_cost": true,
	"seq_page_cost": true, "effective_cache_size": true, "cursor_tuple_fraction": true, "plan_cache_mode": true,
	"gin_fuzzy_search_limit": true, "array_nulls": true, "transaction_isolation": true,
	"transaction_read_only": true, "default_toast_compression": true, "quote_all_identifiers": true,
}

// checkStartupParam checks one startup parameter against the allow list.
func checkStartupParam(key, val string) error {
	switch key {
	case "user", "database", "options":
		if key == "options" {
			return checkOptions(val)
		}
		return nil
	case "replication":
		switch strings.ToLower(val) {
		case "false", "off", "no", "0":
			return nil
		}
		return fatalf(codeFeatureUnsupported, ErrNotAllowed, "replication connections are not relayed by tollgate")
	}
	return checkGUC(key, val)
}

// checkGUC checks a setting a client asks for at startup.
func checkGUC(name, val string) error {
	lname := strings.ToLower(name)
	if strings.HasPrefix(lname, "enable_") {
		return nil // planner switches
	}
	if !allowedGUCs[lname] {
		return fatalf(codeFeatureUnsupported, ErrNotAllowed, "startup parameter %q is not allowed through tollgate", name)
	}
	// Any client_encoding is followed: statement text is read in it (see
	// textCodec), and the server refuses a name it does not know.
	return nil
}

// normEncoding folds an encoding name the way PostgreSQL compares them:
// case and non-alphanumerics ignored.
func normEncoding(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

func isOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y":
		return true
	}
	return false
}

// checkOptions checks the "options" startup parameter: command-line
// switches for the backend, split on whitespace with backslash escapes as
// the server does (pg_split_opts). Only -c name=value and --name=value with
// an allowed setting pass.
func checkOptions(opts string) error {
	args := splitOpts(opts)
	for i := 0; i < len(args); i++ {
		a := args[i]
		var setting string
		switch {
		case a == "-c":
			if i+1 >= len(args) {
				return fatalf(codeFeatureUnsupported, ErrNotAllowed, "startup option -c without a setting")
			}
			i++
			setting = args[i]
		case strings.HasPrefix(a, "-c"):
			setting = a[2:]
		case strings.HasPrefix(a, "--"):
			setting = a[2:]
		default:
			return fatalf(codeFeatureUnsupported, ErrNotAllowed, "startup option %q is not allowed through tollgate", a)
		}
		name, val, ok := strings.Cut(setting, "=")
		if !ok {
			return fatalf(codeFeatureUnsupported, ErrNotAllowed, "startup option %q is not name=value", setting)
		}
		// The server folds '-' to '_' in names given on the command line.
		if err := checkGUC(strings.ReplaceAll(name, "-", "_"), val); err != nil {
			return err
		}
	}
	return nil
}

// splitOpts splits options like the server's pg_split_opts: whitespace
// separates, a backslash makes the next character literal.
func splitOpts(s string) []string {
	var out []string
	var cur strings.Builder
	inArg, esc := false, false
	for _, c := range s {
		switch {
		case esc:
			cur.WriteRune(c)
			esc, inArg = false, true
		case c == '\\':
			esc, inArg = true, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			if inArg {
				out = append(out, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(c)
			inArg = true
		}
	}
	if inArg {
		out = append(out, cur.String())
	}
	return out
}

// writeError sends e to the client as an ErrorResponse, if it has a code.
func writeError(conn net.Conn, err error) {
	var e *Error
	if !errors.As(err, &e) || e.Code == "" {
		return
	}
	if b := e.response(); b != nil {
		conn.Write(b)
	}
}
