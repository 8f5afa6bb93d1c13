// SPDX-License-Identifier: Apache-2.0

// Package postgres is tollgate's PostgreSQL protocol handler. It terminates
// the client side of an intercepted connection, establishes who the client
// is, logs in to the real server with credentials the client never sees,
// and relays the session message by message, writing a durable audit record
// for every statement before the server receives it.
//
// # Client side
//
// The startup phase is read by hand from the raw connection, without any
// buffered reader, so no byte sent before a TLS handshake can be processed
// after it (CVE-2021-23214): GSSENCRequest is answered 'N'; SSLRequest 'S'
// when the session has a TLS config, otherwise 'N' (never 'E', which makes
// some clients reconnect in a loop); a TLS ClientHello as the first byte
// (PostgreSQL 17 direct TLS) is accepted when TLS is configured and the
// client offers ALPN "postgresql". A CancelRequest, plain or over TLS, is
// mapped to the real backend key and sent upstream. The startup packet is
// capped at 10,000 bytes; protocol 3.0 and 3.2 are served, other 3.x minors
// and _pq_ options get NegotiateProtocolVersion; replication connections
// and startup parameters outside an allow list are refused.
//
// # Identity
//
// With client_auth "process" the kernel's view of the connecting process is
// the identity, named after the first configured identity whose process
// section matches. With "oidc" the client's password is an OIDC ID token,
// verified with go-oidc (issuer, audience, expiry, signature) and mapped to
// the first identity whose oidc section (and process section, if any)
// matches. A bad token is refused with FATAL 28P01, an unknown identity
// with FATAL 28000; both are recorded.
//
// # Upstream
//
// The handler connects with pgconn as the target's upstream user with the
// password read from a root-only file at each connect, TLS per sslmode
// without fallbacks, then hijacks the connection. The client gets
// AuthenticationOk, the server's ParameterStatus and notices, a
// BackendKeyData with the real backend PID and a secret the proxy made up,
// and ReadyForQuery.
//
// # Relay and audit
//
// Both directions are framed (type byte, length) and relayed by two
// goroutines; writes are flushed when the reading side has nothing more
// buffered. Query, Parse/Bind/Execute, FunctionCall, COPY and
// notifications are understood; a statement record is durable before any
// message carrying statement text or running a statement (Query, Parse,
// Execute, FunctionCall) is written upstream.
// Results are tracked with a queue of expected responses and recorded after
// the fact. Malformed or oversized client messages end the session with
// FATAL 08P01.
//
// # Policy
//
// Each Query (each statement of a multi-statement string), Parse, Execute
// and FunctionCall is judged by the policy in force, with the grants in
// force, and the decision is in its statement record. A refused message is
// never forwarded: in its place the server is made to raise the refusal
// (ERROR 42501 naming the rule and the record), by a DO block that raises,
// so the transaction and the pipeline fail exactly as for the server's own
// errors. A statement under review is held on the wire until approvers
// decide in the shared approvals registry (approved: forwarded; denied:
// 42501), its timeout passes or the client cancels it (57014); the
// client's later messages wait behind it.
package postgres
