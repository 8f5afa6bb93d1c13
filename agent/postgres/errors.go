// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Errors of the handler. Each is wrapped with context; the client sees a
// PostgreSQL ErrorResponse carrying the SQLSTATE of the *Error that wraps
// it.
var (
	// ErrProtocol means the client broke the wire protocol: a malformed,
	// truncated or oversized message, or one not allowed in this phase.
	ErrProtocol = errors.New("protocol violation")
	// ErrNotAllowed means the client asked for something tollgate does
	// not relay: replication, a startup parameter off the allow list.
	ErrNotAllowed = errors.New("not allowed through tollgate")
	// ErrAuth means the client's credentials (an OIDC token) were refused.
	ErrAuth = errors.New("authentication failed")
	// ErrNoIdentity means the client is authenticated but matches no
	// configured identity.
	ErrNoIdentity = errors.New("no identity matches")
	// ErrUpstream means tollgate could not log in to the real server.
	ErrUpstream = errors.New("upstream connection failed")
	// ErrSecretFile means the upstream password file is missing, not a
	// regular file, not owned by root or readable by others.
	ErrSecretFile = errors.New("unsafe or unreadable upstream password file")
	// ErrAudit means a record that must precede forwarding could not be
	// made durable, so the message was not forwarded (fail closed).
	ErrAudit = errors.New("audit log unwritable")
)

// SQLSTATE codes the handler sends.
const (
	codeProtocolViolation  = "08P01"
	codeFeatureUnsupported = "0A000"
	codeInvalidPassword    = "28P01"
	codeInvalidAuthSpec    = "28000"
	codeCannotConnect      = "08001"
	codeConnectionRejected = "08004"
	codeSystemError        = "58000"
	codeAdminShutdown      = "57P01"
	codeInvalidParameter   = "22023"
)

// Error is an error the client is told about with a PostgreSQL
// ErrorResponse. Message is what the client sees; Err is the cause for the
// operational log and errors.Is.
type Error struct {
	Severity string // FATAL or ERROR
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
	Err      error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s (SQLSTATE %s): %v", e.Message, e.Code, e.Err)
	}
	return fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.Code)
}

func (e *Error) Unwrap() error { return e.Err }

// fatalf returns a FATAL *Error wrapping cause.
func fatalf(code string, cause error, format string, args ...any) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// response encodes e as an ErrorResponse message.
func (e *Error) response() []byte {
	sev := e.Severity
	if sev == "" {
		sev = "FATAL"
	}
	msg := &pgproto3.ErrorResponse{Severity: sev, SeverityUnlocalized: sev, Code: e.Code, Message: e.Message,
		Detail: e.Detail, Hint: e.Hint}
	b, err := msg.Encode(nil)
	if err != nil {
		// Only a message over 1 GiB fails to encode; ours are short.
		return nil
	}
	return b
}
