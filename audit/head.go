// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"fmt"
	"time"
)

// recordHead is what the leading fields of a canonical record say: the
// fields readers of a whole log need for every record (Select, SelectRange
// and Prune, by time or session). The byte slices point into the record.
type recordHead struct {
	log     []byte
	seq     uint64
	time    time.Time
	kind    []byte
	session []byte // nil if the record has none
}

// Prefixes of the canonical encoding, in order.
const (
	headV    = `{"v":1,"log":"`
	headSeq  = `","seq":`
	headTime = `,"time":"`
	headKind = `","kind":"`
	headSess = `","session":"`
)

// parseHead reads the head of a record in the canonical encoding without
// allocating. It fails for anything it cannot read as a canonical head
// (other schema versions, escapes in these fields, other field order): the
// caller then decodes the record fully (DecodeFast) to find out why.
func parseHead(b []byte) (recordHead, error) {
	var h recordHead
	if !bytes.HasPrefix(b, []byte(headV)) {
		return h, ErrNotCanonical
	}
	i := len(headV)
	end := plainString(b, i)
	if end < 0 {
		return h, ErrNotCanonical
	}
	h.log = b[i:end]
	i = end
	if !bytes.HasPrefix(b[i:], []byte(headSeq)) {
		return h, ErrNotCanonical
	}
	i += len(headSeq)
	start := i
	var seq uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if seq > (1<<64-1-d)/10 {
			return h, ErrNotCanonical
		}
		seq = seq*10 + d
	}
	if i == start || i-start > 1 && b[start] == '0' {
		return h, ErrNotCanonical
	}
	h.seq = seq
	if !bytes.HasPrefix(b[i:], []byte(headTime)) || len(b)-i < len(headTime)+len(timeLayout) {
		return h, ErrNotCanonical
	}
	i += len(headTime)
	t, ok := parseCanonicalTime(string(b[i : i+len(timeLayout)]))
	if !ok {
		return h, ErrNotCanonical
	}
	h.time = t
	i += len(timeLayout)
	if !bytes.HasPrefix(b[i:], []byte(headKind)) {
		return h, ErrNotCanonical
	}
	i += len(headKind)
	end = plainString(b, i)
	if end <= i {
		return h, ErrNotCanonical
	}
	h.kind = b[i:end]
	i = end
	if bytes.HasPrefix(b[i:], []byte(headSess)) {
		i += len(headSess)
		end = plainString(b, i)
		if end <= i {
			return h, ErrNotCanonical
		}
		h.session = b[i:end]
		i = end
	}
	if i+1 >= len(b) || b[i] != '"' || b[i+1] != ',' && b[i+1] != '}' || b[len(b)-1] != '}' {
		return h, ErrNotCanonical
	}
	return h, nil
}

// plainString returns the index of the '"' ending a string whose content
// starts at i, if the content has no escapes or control characters; -1
// otherwise.
func plainString(b []byte, i int) int {
	for j := i; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j
		case c == '\\' || c < 0x20:
			return -1
		}
	}
	return -1
}

// headOf returns the head of a record, decoding it fully when the fast path
// cannot read it. The error says why the record is not readable.
func headOf(b []byte) (recordHead, error) {
	if h, err := parseHead(b); err == nil {
		return h, nil
	}
	r, err := DecodeFast(b)
	if err != nil {
		return recordHead{}, err
	}
	h := recordHead{log: []byte(r.Log), seq: r.Seq, time: r.Time, kind: []byte(r.Kind)}
	if r.Session != "" {
		h.session = []byte(r.Session)
	}
	return h, nil
}

// CanonicalError returns nil if b is a record in the canonical encoding
// (what Encode writes, and all the log stores), and otherwise why it is
// not: Decode's error for bytes that are not a record, or an error
// wrapping ErrNotCanonical for a record that Encode would write
// differently. The evidence verifier reports it for every line it refuses.
func CanonicalError(b []byte) error {
	if _, ok := decodeCanonical(b); ok {
		return nil
	}
	if _, err := parseHead(b); err == nil {
		// A canonical head, and something else after it.
		return ErrNotCanonical
	}
	if _, err := Decode(b); err != nil {
		return err
	}
	return fmt.Errorf("%w (decodes, but is not byte for byte what tollgate writes)", ErrNotCanonical)
}
