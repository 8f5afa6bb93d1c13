// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Message size limits, as the server applies them: messages that carry
// statement text or data may be large, the others are small.
const (
	// DefaultMaxMessage is PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (1 GiB - 1).
	DefaultMaxMessage = 1<<30 - 1
	// maxSmallMessage is PostgreSQL's PQ_SMALL_MESSAGE_LIMIT.
	maxSmallMessage = 10000
	// inlineMax is the largest message copied into a pending batch; larger
	// ones are written on their own, after the batch.
	inlineMax = 256 << 10
	// batchMax bounds the bytes held back while a batch's records are
	// made durable.
	batchMax = 1 << 20
	// bufSize is the size of the buffered readers and writers: three per
	// session, held while it is idle. At 64 KiB an idle session cost the
	// daemon 69 KiB of RSS, at 16 KiB 27 (BenchmarkPostgresIdleRSS), with
	// a 1M-row SELECT's CPU and throughput unchanged within run-to-run
	// noise (BenchmarkMaskingThroughput): rows are streamed through, and
	// 16 KiB reads already carry many rows each.
	bufSize = 16 << 10
)

// errTruncated means the peer closed in the middle of a message.
var errTruncated = errors.New("connection closed within a message")

// readHeader reads a message's type and body length. A clean end of stream
// before the first byte returns io.EOF.
func readHeader(r *bufio.Reader) (byte, int, error) {
	hdr, err := r.Peek(5)
	if err != nil {
		if len(hdr) == 0 && errors.Is(err, io.EOF) {
			return 0, 0, io.EOF
		}
		if errors.Is(err, io.EOF) {
			return 0, 0, errTruncated
		}
		return 0, 0, err
	}
	typ := hdr[0]
	l := int32(binary.BigEndian.Uint32(hdr[1:5]))
	r.Discard(5)
	if l < 4 {
		return typ, 0, fmt.Errorf("%w: invalid message length %d", ErrProtocol, l)
	}
	return typ, int(l - 4), nil
}

// readBody reads n bytes into buf and returns them. The buffer grows as
// the bytes arrive, doubling, so a peer that announces a huge length
// without sending the bytes does not get a huge allocation.
func readBody(r *bufio.Reader, buf *[]byte, n int) ([]byte, error) {
	b := (*buf)[:0]
	for len(b) < n {
		want := n - len(b)
		if cap(b) == len(b) {
			b = slices.Grow(b, min(want, max(len(b), bufSize)))
		}
		chunk := min(want, cap(b)-len(b))
		m, err := io.ReadFull(r, b[len(b):len(b)+chunk])
		b = b[:len(b)+m]
		if err != nil {
			*buf = b
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errTruncated
			}
			return nil, err
		}
	}
	*buf = b
	return b, nil
}

// releaseBody drops a body buffer that grew large, so one big message does
// not pin its memory for the rest of the session.
func releaseBody(buf *[]byte) {
	if cap(*buf) > batchMax {
		*buf = nil
	}
}

// appendFrame appends a message with its header to dst.
func appendFrame(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(body)+4))
	return append(dst, body...)
}

// Message types: a message's first byte. The same byte names a different
// message in each direction, so the names say which one is meant.
const (
	// Client to server (frontend).
	typeQuery        = 'Q'
	typeParse        = 'P'
	typeBind         = 'B'
	typeDescribe     = 'D'
	typeExecute      = 'E'
	typeClose        = 'C'
	typeSync         = 'S'
	typeFlush        = 'H'
	typeTerminate    = 'X'
	typeFunctionCall = 'F'
	typeCopyFail     = 'f'

	// Both ways.
	typeCopyData = 'd'
	typeCopyDone = 'c'

	// Server to client (backend).
	typeRowDescription           = 'T'
	typeDataRow                  = 'D'
	typeCommandComplete          = 'C'
	typeErrorResponse            = 'E'
	typeReadyForQuery            = 'Z'
	typeParameterStatus          = 'S'
	typeBackendKeyData           = 'K'
	typeAuthentication           = 'R'
	typeNegotiateProtocolVersion = 'v'
	typeParseComplete            = '1'
	typeBindComplete             = '2'
	typeCloseComplete            = '3'
	typeParameterDescription     = 't'
	typeNoData                   = 'n'
	typeEmptyQueryResponse       = 'I'
	typePortalSuspended          = 's'
	typeNoticeResponse           = 'N'
	typeNotificationResponse     = 'A'
	typeCopyOutResponse          = 'H'
	typeFunctionCallResponse     = 'V'
)

// frameHeader returns a message header for a body of n bytes.
func frameHeader(typ byte, n int) [5]byte {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(n+4))
	return h
}

// clientLimit is the largest body the server accepts for a client message
// type, and whether the type is valid after the startup phase at all.
func clientLimit(typ byte, large int) (int, bool) {
	switch typ {
	case typeQuery, typeParse, typeBind, typeFunctionCall, typeCopyData, typeCopyFail:
		return large, true
	case typeDescribe, typeExecute, typeClose, typeSync, typeFlush, typeTerminate, typeCopyDone:
		return maxSmallMessage, true
	}
	return 0, false
}
