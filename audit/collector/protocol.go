// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Limits of one add-entries request.
const (
	// MaxRecords is the most records one add-entries request carries.
	MaxRecords = 8192
	// MaxBodyBytes is the largest request body accepted.
	MaxBodyBytes = 8 << 20
)

// Paths of the protocol, all POST with a JSON body.
const (
	// PathAddEntries appends records to a host's log (AddEntriesRequest).
	PathAddEntries = "/v1/add-entries"
	// PathEnroll exchanges an enrollment token for a credential
	// (EnrollRequest).
	PathEnroll = "/v1/enroll"
)

// AddEntriesRequest appends the records [Start, Start+len(Entries)) of the
// log Origin. Checkpoint is the host's signed checkpoint of size
// Start+len(Entries). Entries are the exact stored record bytes (base64 in
// JSON).
type AddEntriesRequest struct {
	Origin     string   `json:"origin"`
	Start      uint64   `json:"start"`
	Entries    [][]byte `json:"entries"`
	Checkpoint []byte   `json:"checkpoint"`
}

// AddEntriesResponse answers a stored (or already stored) range: the
// collector now holds Size records of the log, and Checkpoint is the
// host's checkpoint of that size with the collector's cosignature line
// appended.
type AddEntriesResponse struct {
	Size       uint64 `json:"size"`
	Checkpoint []byte `json:"checkpoint"`
}

// EnrollRequest presents a single-use enrollment token with the host's
// name, its log's origin and its checkpoint verifier key (host.pub).
type EnrollRequest struct {
	Token  string `json:"token"`
	Host   string `json:"host"`
	Origin string `json:"origin"`
	Key    string `json:"key"`
}

// EnrollResponse carries the host's credential (sent as a bearer token on
// every later request) and the collector's verifier key, with which the
// host checks cosignatures.
type EnrollResponse struct {
	Credential   string `json:"credential"`
	CollectorKey string `json:"collector_key"`
}

// ErrorResponse is the body of every 4xx and 5xx answer. Size is set on 409:
// the size the collector holds, where the host resumes.
type ErrorResponse struct {
	Error string  `json:"error"`
	Size  *uint64 `json:"size,omitempty"`
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON object", ErrBadRequest)
	}
	return nil
}

// DecodeAddEntries decodes and checks the shape of an add-entries body:
// an origin, at most MaxRecords entries none of them empty, and a
// checkpoint. It does not check signatures or content against a log.
func DecodeAddEntries(body []byte) (*AddEntriesRequest, error) {
	return decodeAddEntries(body, nil)
}

// decodeAddEntries is DecodeAddEntries with the entries of the usual
// layout decoded into arena's spare capacity when it has room for them
// (one buffer per request instead of one allocation per record); the
// request then refers to arena until the caller is done with it.
func decodeAddEntries(body, arena []byte) (*AddEntriesRequest, error) {
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("%w: body of %d bytes, at most %d", ErrTooLarge, len(body), MaxBodyBytes)
	}
	req, ok := fastAddEntries(body, arena)
	if !ok {
		req = &AddEntriesRequest{}
		if err := decodeStrict(body, req); err != nil {
			return nil, err
		}
	}
	switch {
	case req.Origin == "":
		return nil, fmt.Errorf("%w: origin missing", ErrBadRequest)
	case len(req.Checkpoint) == 0:
		return nil, fmt.Errorf("%w: checkpoint missing", ErrBadRequest)
	case len(req.Entries) > MaxRecords:
		return nil, fmt.Errorf("%w: %d records, at most %d", ErrTooLarge, len(req.Entries), MaxRecords)
	case req.Start > 1<<62:
		return nil, fmt.Errorf("%w: start %d out of range", ErrBadRequest, req.Start)
	}
	for i, e := range req.Entries {
		if len(e) == 0 {
			return nil, fmt.Errorf("%w: entry %d is empty", ErrBadRequest, i)
		}
	}
	return req, nil
}

// fastAddEntries parses the exact layout json.Marshal gives an
// AddEntriesRequest (fields in order, no white space, strings without
// escapes, base64 of the standard alphabet), which is what shippers send,
// in one pass. For anything else it reports false and DecodeAddEntries
// uses the strict general decoder; FuzzDecode checks that whatever this
// accepts the general decoder accepts with the same result. Entries are
// decoded into arena's spare capacity if it holds them all (the decoded
// size of b does), else each into its own slice.
func fastAddEntries(b, arena []byte) (*AddEntriesRequest, bool) {
	if cap(arena)-len(arena) < base64.StdEncoding.DecodedLen(len(b)) {
		arena = nil
	}
	var req AddEntriesRequest
	rest, ok := bytes.CutPrefix(b, []byte(`{"origin":"`))
	if !ok {
		return nil, false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return nil, false
	}
	for _, c := range rest[:i] {
		if c < 0x20 || c == '\\' || c >= 0x80 {
			return nil, false
		}
	}
	req.Origin = string(rest[:i])
	if rest, ok = bytes.CutPrefix(rest[i+1:], []byte(`,"start":`)); !ok {
		return nil, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > 19 || n > 1 && rest[0] == '0' {
		return nil, false
	}
	for _, c := range rest[:n] {
		req.Start = req.Start*10 + uint64(c-'0')
	}
	if rest, ok = bytes.CutPrefix(rest[n:], []byte(`,"entries":[`)); !ok {
		return nil, false
	}
	if r, ok := bytes.CutPrefix(rest, []byte(`]`)); ok {
		rest = r
		req.Entries = [][]byte{}
	} else {
		for {
			var e []byte
			if e, rest, arena, ok = fastBase64(rest, arena); !ok {
				return nil, false
			}
			req.Entries = append(req.Entries, e)
			if len(rest) > 0 && rest[0] == ',' {
				rest = rest[1:]
				continue
			}
			if rest, ok = bytes.CutPrefix(rest, []byte(`]`)); !ok {
				return nil, false
			}
			break
		}
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"checkpoint":`)); !ok {
		return nil, false
	}
	// The checkpoint gets its own slice: the answer is built from it and
	// must not refer to the arena.
	if req.Checkpoint, rest, _, ok = fastBase64(rest, nil); !ok {
		return nil, false
	}
	if !bytes.Equal(rest, []byte(`}`)) {
		return nil, false
	}
	return &req, true
}

// strictBase64 is the standard padded alphabet without the line breaks
// the decoder otherwise skips.
var strictBase64 = base64.StdEncoding.Strict()

// fastBase64 reads a JSON string of standard base64 (padded, no other
// characters) and decodes it into arena's spare capacity, returning the
// arena grown by it; with a nil arena into a new slice.
func fastBase64(b, arena []byte) (out, rest, grown []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, nil, false
	}
	i := bytes.IndexByte(b[1:], '"')
	if i < 0 {
		return nil, nil, nil, false
	}
	s := b[1 : 1+i]
	if len(s)%4 != 0 {
		return nil, nil, nil, false
	}
	m := base64.StdEncoding.DecodedLen(len(s))
	if arena == nil {
		out = make([]byte, m)
	} else {
		out = arena[len(arena) : len(arena)+m]
	}
	// The decoder refuses every character outside the alphabet (a
	// backslash escape included) but skips CR and LF, which JSON does not
	// allow raw in a string: a skipped character leaves the output at
	// least 3 bytes short of what the padding says, so the length check
	// refuses it without another pass over s.
	n, err := strictBase64.Decode(out, s)
	pad := 0
	for j := len(s) - 1; j >= len(s)-2 && j >= 0 && s[j] == '='; j-- {
		pad++
	}
	if err != nil || n != m-pad {
		return nil, nil, nil, false
	}
	if arena != nil {
		arena = arena[:len(arena)+n]
	}
	return out[:n:n], b[2+i:], arena, true
}

// DecodeEnroll decodes an enrollment body; every field is required.
func DecodeEnroll(body []byte) (*EnrollRequest, error) {
	if len(body) > 64<<10 {
		return nil, fmt.Errorf("%w: enrollment body of %d bytes", ErrTooLarge, len(body))
	}
	var req EnrollRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	if req.Token == "" || req.Host == "" || req.Origin == "" || req.Key == "" {
		return nil, fmt.Errorf("%w: token, host, origin and key are required", ErrBadRequest)
	}
	return &req, nil
}

// readBody reads a request body of at most MaxBodyBytes into buf, reusing
// its capacity; a larger one is ErrTooLarge, a body cut short (the client
// announced more than it sent) ErrBadRequest.
func readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	if r.ContentLength > MaxBodyBytes {
		return nil, fmt.Errorf("%w: body of %d bytes, at most %d", ErrTooLarge, r.ContentLength, MaxBodyBytes)
	}
	rd := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if n := int(r.ContentLength); n >= 0 {
		// Known length (what shippers send): one read into buf, reused.
		// net/http ends the body at its Content-Length.
		b := buf[:0]
		if cap(b) < n {
			b = make([]byte, n)
		}
		b = b[:n]
		if _, err := io.ReadFull(rd, b); err != nil {
			return nil, fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
		}
		return b, nil
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, MaxBodyBytes)
		}
		return nil, fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
	}
	return b, nil
}
