// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// checkpointTimePrefix starts the extension line of a checkpoint that says
// when it was signed.
const checkpointTimePrefix = "time "

// Checkpoint is a signed tree head: the host's signature over the log's
// origin, its size and the root of its RFC 6962 tree. It is a C2SP signed
// note (c2sp.org/signed-note) whose text is a C2SP tlog-checkpoint with one
// extension line:
//
//	tollgate/<host-id>/<epoch>
//	<size, decimal>
//	<root, standard base64>
//	time <signing time, RFC 3339 UTC with nine fractional digits>
//
// followed by a blank line and the host key's Ed25519 signature line.
type Checkpoint struct {
	// Origin is the log id, "tollgate/<host-id>/<epoch>".
	Origin string
	// Size is the number of records the checkpoint covers.
	Size uint64
	// Root is the RFC 6962 root of the tree of the first Size records.
	Root []byte
	// Time is when the checkpoint was signed, by the host's clock.
	Time time.Time
	// Note is the signed note exactly as stored.
	Note []byte
}

// checkpointText returns the signed text of cp.
func checkpointText(cp *Checkpoint) string {
	return cp.Origin + "\n" + strconv.FormatUint(cp.Size, 10) + "\n" +
		base64.StdEncoding.EncodeToString(cp.Root) + "\n" +
		checkpointTimePrefix + cp.Time.UTC().Format(timeLayout) + "\n"
}

// signCheckpoint returns the signed note of cp.
func signCheckpoint(cp *Checkpoint, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointText(cp)}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint %d: %w", cp.Size, err)
	}
	return msg, nil
}

// parseCheckpointText parses the text of a checkpoint note strictly: exactly
// the four lines above, canonical numbers and encodings.
func parseCheckpointText(text string) (*Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 4 {
		return nil, fmt.Errorf("checkpoint has %d lines, want 4 (origin, size, root, time)", len(lines))
	}
	cp := &Checkpoint{Origin: lines[0]}
	if cp.Origin == "" || strings.ContainsAny(cp.Origin, " \t+") {
		return nil, fmt.Errorf("checkpoint origin %q is not a log id", cp.Origin)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return nil, fmt.Errorf("checkpoint size %q is not a decimal number", lines[1])
	}
	cp.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return nil, fmt.Errorf("checkpoint root %q is not a base64 SHA-256 hash", lines[2])
	}
	cp.Root = root
	ts, ok := strings.CutPrefix(lines[3], checkpointTimePrefix)
	if !ok {
		return nil, fmt.Errorf("checkpoint extension line %q is not understood (want %q)", lines[3], checkpointTimePrefix+"<RFC 3339 time>")
	}
	t, err := time.Parse(timeLayout, ts)
	if err != nil || t.Format(timeLayout) != ts {
		return nil, fmt.Errorf("checkpoint time %q is not RFC 3339 UTC with nine fractional digits", ts)
	}
	cp.Time = t
	return cp, nil
}

// parseCheckpointNote parses a stored checkpoint note without checking its
// signature.
func parseCheckpointNote(msg []byte) (*Checkpoint, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, errors.New("not a signed note: no blank line before the signatures")
	}
	cp, err := parseCheckpointText(string(msg[:i+1]))
	if err != nil {
		return nil, err
	}
	cp.Note = msg
	return cp, nil
}

// OpenCheckpoint verifies a checkpoint note's signature with v and parses
// it. It fails with ErrBadSignature if the note is not signed by v's key
// (signed by another key, or the signature does not verify), and with
// ErrMalformedCheckpoint if it is not a checkpoint in the format described
// at Checkpoint. Signatures by other keys next to v's are ignored.
func OpenCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnknownVerifierError
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			names := make([]string, 0, len(unverified.Note.UnverifiedSigs))
			for _, s := range unverified.Note.UnverifiedSigs {
				names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			return nil, fmt.Errorf("not signed by %s+%08x (signed by %s): %w", v.Name(), v.KeyHash(), strings.Join(names, ", "), ErrBadSignature)
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("signature of %s+%08x does not verify: %w", invalid.Name, invalid.Hash, ErrBadSignature)
		case errors.As(err, &unknown):
			return nil, fmt.Errorf("%v: %w", err, ErrBadSignature)
		default:
			// The note package's malformed-note error is unexported.
			return nil, fmt.Errorf("%w: %w", ErrMalformedCheckpoint, err)
		}
	}
	cp, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedCheckpoint, err)
	}
	cp.Note = msg
	return cp, nil
}

// SignCheckpoint signs a checkpoint of the log origin at size with the
// given root, stamped t, with the host key's signer. The shipper uses it to
// sign the exact size of each batch it sends.
func SignCheckpoint(origin string, size uint64, root []byte, t time.Time, s note.Signer) (*Checkpoint, error) {
	if len(root) != HashSize {
		return nil, fmt.Errorf("sign checkpoint %d: root of %d bytes: %w", size, len(root), ErrMalformedCheckpoint)
	}
	cp := &Checkpoint{Origin: origin, Size: size, Root: root, Time: t.UTC()}
	msg, err := signCheckpoint(cp, s)
	if err != nil {
		return nil, err
	}
	cp.Note = msg
	return cp, nil
}
