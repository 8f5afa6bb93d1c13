// SPDX-License-Identifier: Apache-2.0

package collector

import "errors"

// Errors of the collector. Callers test for them with [errors.Is]; returned
// errors wrap them with the cause.
var (
	// ErrBadKey is returned for key text that is not a cosignature/v1
	// Ed25519 key of the expected form.
	ErrBadKey = errors.New("not a collector key")

	// ErrBadRequest is returned by the request decoders for a body that is
	// not a well-formed request: malformed JSON, unknown or missing
	// fields, trailing data, wrong types.
	ErrBadRequest = errors.New("malformed request")

	// ErrTooLarge is returned for a request over MaxRecords records or
	// MaxBodyBytes bytes.
	ErrTooLarge = errors.New("request too large")

	// ErrConfig is returned by LoadConfig for a collector.yaml that cannot
	// be used.
	ErrConfig = errors.New("invalid collector config")

	// ErrUnauthorized is returned when a request's credential or an
	// enrollment token is missing, unknown, used or expired.
	ErrUnauthorized = errors.New("not authorized")

	// ErrConflict is returned by Ingest when start is not the size the
	// collector holds; IngestError.Size says which size it holds.
	ErrConflict = errors.New("start differs from the stored size")

	// ErrMisbehavior is returned by Ingest when a valid host signature
	// covers a tree inconsistent with what the collector holds (fork,
	// rollback, edited records), and for every request of a log halted
	// by such a finding.
	ErrMisbehavior = errors.New("host log misbehavior")

	// ErrBadSignature is returned when a checkpoint is not signed by the
	// host's enrolled key.
	ErrBadSignature = errors.New("checkpoint not signed by the enrolled host key")

	// ErrUnprocessable is returned for a request whose content is
	// well-formed but unusable: a record that is not a tollgate record of
	// this log at its seq, a checkpoint of another origin or size.
	ErrUnprocessable = errors.New("request content not acceptable")

	// ErrBusy is returned when another request of the same log holds its
	// row lock, or the collector is at its concurrency limit: the client
	// retries after a moment (429).
	ErrBusy = errors.New("collector busy")

	// ErrEnrolled is returned by Enroll for a host name already enrolled
	// with another key or log.
	ErrEnrolled = errors.New("host already enrolled with another key or log")

	// ErrUnknownLog is returned by Export for a host name or origin that
	// is not enrolled, or a log with no cosigned checkpoint yet.
	ErrUnknownLog = errors.New("no such log at the collector")

	// ErrDropped is returned by Export for a range that needs records the
	// collector's retention dropped (only their leaf hashes are kept).
	ErrDropped = errors.New("records dropped by the collector's retention")
)
