// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Kinds of misbehavior.
const (
	// MisbehaviorFork: the host signed a tree that is not an extension of
	// the one the collector holds (a different tree of a stored size, or
	// entries that do not lead to the signed root from the stored tree).
	MisbehaviorFork = "fork"
	// MisbehaviorRollback: the host signed a smaller tree after the
	// collector cosigned a larger one.
	MisbehaviorRollback = "rollback"
	// MisbehaviorSilence: an enrolled host sent nothing for longer than
	// silence_after.
	MisbehaviorSilence = "silence"
)

// rangeFactory builds compact ranges with RFC 6962 hashing, as the host's
// log does.
var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Store is the collector's PostgreSQL store. It keeps no state between
// requests beyond caches of immutable data, so any number of replicas can
// share one database.
type Store struct {
	pool   *pgxpool.Pool
	cosign *Cosigner
	logger *slog.Logger

	// partitions caches the day partitions known to exist.
	partMu     sync.Mutex
	partitions map[string]bool
}

// NewStore returns a store on pool that cosigns with c.
func NewStore(pool *pgxpool.Pool, c *Cosigner, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, cosign: c, logger: logger, partitions: map[string]bool{}}
}

// Host is an enrolled host.
type Host struct {
	Name     string
	Origin   string
	Key      string
	verifier note.Verifier
}

// IngestError carries the collector's size with ErrConflict.
type IngestError struct {
	Err  error
	Size uint64
	Msg  string
}

func (e *IngestError) Error() string { return e.Msg }
func (e *IngestError) Unwrap() error { return e.Err }

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func newSecret(prefix string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// CreateToken stores a single-use enrollment token for host, valid for
// ttl, and returns it. Only its hash is stored.
func (s *Store) CreateToken(ctx context.Context, host string, ttl time.Duration) (string, error) {
	if err := checkHostName(host); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", fmt.Errorf("enrollment token: ttl must be positive")
	}
	tok, err := newSecret("tge_")
	if err != nil {
		return "", fmt.Errorf("enrollment token: %w", err)
	}
	_, err = s.pool.Exec(ctx, "INSERT INTO enrollment_tokens (token_hash, host, expires_at) VALUES ($1, $2, now() + $3::interval)",
		hashSecret(tok), host, fmt.Sprintf("%d microseconds", ttl.Microseconds()))
	if err != nil {
		return "", fmt.Errorf("enrollment token: %w", err)
	}
	return tok, nil
}

// checkHostName accepts the host ids the daemon accepts.
func checkHostName(h string) error {
	if h == "" || len(h) > 255 || strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return fmt.Errorf("host name %q: want 1 to 255 characters from [A-Za-z0-9._-]: %w", h, ErrBadRequest)
	}
	return nil
}

// Enroll exchanges a single-use token for a host credential. The host
// presents its name, its log's origin and its checkpoint verifier key; the
// key must be named for the host ("tollgate/<name>") and the origin be one
// of the host's logs. A host enrolled before may enroll again (a lost
// credential) only with the same key and origin.
func (s *Store) Enroll(ctx context.Context, req *EnrollRequest) (*EnrollResponse, error) {
	if err := checkHostName(req.Host); err != nil {
		return nil, err
	}
	v, err := audit.ParseVerifierKey(req.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if v.Name() != audit.KeyName(req.Host) {
		return nil, fmt.Errorf("%w: key is named %q, not %q", ErrUnprocessable, v.Name(), audit.KeyName(req.Host))
	}
	if !strings.HasPrefix(req.Origin, audit.KeyName(req.Host)+"/") || strings.ContainsAny(req.Origin, " \t\n+") {
		return nil, fmt.Errorf("%w: origin %q is not a log of host %q", ErrUnprocessable, req.Origin, req.Host)
	}
	cred, err := newSecret("tgc_")
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	key := strings.TrimSpace(req.Key)
	var refused error
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var host string
		var expired bool
		var used *time.Time
		err := tx.QueryRow(ctx, "SELECT host, expires_at < now(), used_at FROM enrollment_tokens WHERE token_hash = $1 FOR UPDATE",
			hashSecret(req.Token)).Scan(&host, &expired, &used)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%w: unknown enrollment token", ErrUnauthorized)
		case err != nil:
			return err
		case used != nil:
			return fmt.Errorf("%w: enrollment token already used at %s", ErrUnauthorized, used.UTC().Format(time.RFC3339))
		case expired:
			return fmt.Errorf("%w: enrollment token expired", ErrUnauthorized)
		case host != req.Host:
			return fmt.Errorf("%w: enrollment token was issued for host %q, not %q", ErrUnauthorized, host, req.Host)
		}
		// The token is spent whatever happens next.
		if _, err := tx.Exec(ctx, "UPDATE enrollment_tokens SET used_at = now() WHERE token_hash = $1", hashSecret(req.Token)); err != nil {
			return err
		}
		var oldKey, oldOrigin string
		err = tx.QueryRow(ctx, "SELECT public_key, origin FROM hosts WHERE name = $1", req.Host).Scan(&oldKey, &oldOrigin)
		switch {
		case err == nil:
			if oldKey != key || oldOrigin != req.Origin {
				refused = fmt.Errorf("%w: host %q is enrolled with key %s and log %s", ErrEnrolled, req.Host, oldKey, oldOrigin)
				return nil
			}
			_, err = tx.Exec(ctx, "UPDATE hosts SET credential_hash = $2 WHERE name = $1", req.Host, hashSecret(cred))
			return err
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		var other string
		if err := tx.QueryRow(ctx, "SELECT name FROM hosts WHERE origin = $1", req.Origin).Scan(&other); err == nil {
			refused = fmt.Errorf("%w: log %s is enrolled for host %q", ErrEnrolled, req.Origin, other)
			return nil
		}
		if _, err := tx.Exec(ctx, "INSERT INTO hosts (name, origin, public_key, credential_hash) VALUES ($1, $2, $3, $4)",
			req.Host, req.Origin, key, hashSecret(cred)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO log_state (origin) VALUES ($1)", req.Origin)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrUnauthorized) {
			return nil, err
		}
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if refused != nil {
		s.logger.Warn("enrollment refused", "host", req.Host, "origin", req.Origin, "error", refused)
		return nil, refused
	}
	s.logger.Info("host enrolled", "host", req.Host, "origin", req.Origin)
	return &EnrollResponse{Credential: cred, CollectorKey: s.cosign.VerifierKey}, nil
}

// Authenticate returns the host a credential belongs to.
func (s *Store) Authenticate(ctx context.Context, cred string) (*Host, error) {
	if cred == "" {
		return nil, fmt.Errorf("%w: no credential (Authorization: Bearer)", ErrUnauthorized)
	}
	h := &Host{}
	err := s.pool.QueryRow(ctx, "SELECT name, origin, public_key FROM hosts WHERE credential_hash = $1", hashSecret(cred)).
		Scan(&h.Name, &h.Origin, &h.Key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown credential", ErrUnauthorized)
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if h.verifier, err = audit.ParseVerifierKey(h.Key); err != nil {
		return nil, fmt.Errorf("authenticate: stored key of %s: %w", h.Name, err)
	}
	return h, nil
}

// row is one record to COPY.
type row struct {
	seq                                              uint64
	time                                             time.Time
	kind                                             string
	identity, target, session, fingerprint, decision *string
	data                                             []byte
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// prepare checks each entry is a record of the log at its seq and returns
// the rows and leaf hashes.
func prepare(origin string, start uint64, entries [][]byte) ([]row, [][]byte, error) {
	rows := make([]row, len(entries))
	leaves := make([][]byte, len(entries))
	for i, e := range entries {
		seq := start + uint64(i)
		r, err := audit.DecodeFast(e)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: entry %d (seq %d): %w", ErrUnprocessable, i, seq, err)
		}
		if r.Log != origin || r.Seq != seq {
			return nil, nil, fmt.Errorf("%w: entry %d is record %s/%d, not %s/%d", ErrUnprocessable, i, r.Log, r.Seq, origin, seq)
		}
		rw := row{seq: seq, time: r.Time, kind: string(r.Kind), session: strOrNil(r.Session), target: strOrNil(r.Target), data: e}
		if r.Identity != nil {
			rw.identity = strOrNil(r.Identity.Name)
		}
		if r.Statement != nil {
			rw.fingerprint = strOrNil(r.Statement.Fingerprint)
		}
		if r.Decision != nil {
			rw.decision = strOrNil(r.Decision.Action)
		}
		rows[i] = rw
		leaves[i] = audit.LeafHash(e)
	}
	return rows, leaves, nil
}

// ensurePartitions creates the day partitions of records for the times
// given, each in its own short transaction (creating a partition locks the
// parent table, which must not be held across an ingest).
func (s *Store) ensurePartitions(ctx context.Context, rows []row) error {
	days := map[string]time.Time{}
	for _, r := range rows {
		d := r.time.UTC().Truncate(24 * time.Hour)
		days[d.Format("20060102")] = d
	}
	for name, d := range days {
		s.partMu.Lock()
		known := s.partitions[name]
		s.partMu.Unlock()
		if known {
			continue
		}
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock+1)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS records_%s PARTITION OF records FOR VALUES FROM ('%s') TO ('%s')",
				name, d.Format(time.RFC3339), d.Add(24*time.Hour).Format(time.RFC3339)))
			return err
		})
		if err != nil {
			return fmt.Errorf("partition records_%s: %w", name, err)
		}
		s.partMu.Lock()
		s.partitions[name] = true
		s.partMu.Unlock()
	}
	return nil
}

// logState is a locked log_state row.
type logState struct {
	size       uint64
	compact    []byte
	checkpoint []byte
	halted     *string
}

// Ingest runs add-entries for an authenticated host; see the package
// documentation for the rules. It returns the cosigned checkpoint, or an
// error wrapping ErrConflict (an *IngestError with the stored size),
// ErrMisbehavior, ErrBadSignature, ErrUnprocessable or ErrBusy.
func (s *Store) Ingest(ctx context.Context, h *Host, req *AddEntriesRequest) (*AddEntriesResponse, error) {
	if req.Origin != h.Origin {
		return nil, fmt.Errorf("%w: origin %q is not the log enrolled for host %q", ErrUnauthorized, req.Origin, h.Name)
	}
	cp, err := audit.OpenCheckpoint(req.Checkpoint, h.verifier)
	if err != nil {
		if errors.Is(err, audit.ErrBadSignature) {
			return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnprocessable, err)
	}
	end := req.Start + uint64(len(req.Entries))
	if cp.Origin != req.Origin || cp.Size != end {
		return nil, fmt.Errorf("%w: checkpoint is %s at size %d, want %s at %d (start + entries)", ErrUnprocessable, cp.Origin, cp.Size, req.Origin, end)
	}
	rows, leaves, err := prepare(req.Origin, req.Start, req.Entries)
	if err != nil {
		return nil, err
	}
	if err := s.ensurePartitions(ctx, rows); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}

	var resp *AddEntriesResponse
	var outcome error
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		resp, outcome = nil, nil
		var st logState
		var size int64
		err := tx.QueryRow(ctx, "SELECT size, compact_range, checkpoint, halted FROM log_state WHERE origin = $1 FOR UPDATE NOWAIT", req.Origin).
			Scan(&size, &st.compact, &st.checkpoint, &st.halted)
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "55P03" {
				// The failed lock aborted the transaction: roll it back.
				return fmt.Errorf("%w: another request of log %s is in flight", ErrBusy, req.Origin)
			}
			return err
		}
		st.size = uint64(size)
		if st.halted != nil {
			outcome = fmt.Errorf("%w: log %s halted: %s", ErrMisbehavior, req.Origin, *st.halted)
			return nil
		}
		if req.Start != st.size {
			resp, outcome, err = s.notAtSize(ctx, tx, &st, req, cp, h.verifier)
			return err
		}
		rng, err := decodeRange(st.size, st.compact)
		if err != nil {
			return fmt.Errorf("stored compact range of %s: %w", req.Origin, err)
		}
		for _, l := range leaves {
			if err := rng.Append(l, nil); err != nil {
				return err
			}
		}
		root := audit.EmptyRoot()
		if rng.End() > 0 {
			if root, err = rng.GetRootHash(nil); err != nil {
				return err
			}
		}
		if !bytes.Equal(root, cp.Root) {
			detail := fmt.Sprintf("entries %d..%d appended to the stored tree of size %d give root %s, the host signed %s",
				req.Start, end, st.size, b64(root), b64(cp.Root))
			outcome, err = s.misbehave(ctx, tx, req.Origin, MisbehaviorFork, detail, st.checkpoint, req.Checkpoint, req)
			return err
		}
		if len(rows) > 0 {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"records"},
				[]string{"origin", "seq", "time", "kind", "identity", "target", "session", "fingerprint", "decision", "data"},
				pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
					r := &rows[i]
					return []any{req.Origin, int64(r.seq), r.time, r.kind, r.identity, r.target, r.session, r.fingerprint, r.decision, r.data}, nil
				}))
			if err != nil {
				return fmt.Errorf("copy records: %w", err)
			}
			if n != int64(len(rows)) {
				return fmt.Errorf("copy records: %d of %d stored", n, len(rows))
			}
		}
		cosigned, err := s.storeCheckpoint(ctx, tx, req.Origin, cp)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE log_state SET size = $2, compact_range = $3, checkpoint = $4, last_seen = now(), silent_since = NULL WHERE origin = $1",
			req.Origin, int64(end), encodeRange(rng), req.Checkpoint); err != nil {
			return err
		}
		resp = &AddEntriesResponse{Size: end, Checkpoint: cosigned}
		return nil
	})
	if errors.Is(err, ErrBusy) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("ingest %s at %d: %w", req.Origin, req.Start, err)
	}
	if outcome != nil {
		return nil, outcome
	}
	return resp, nil
}

// storeCheckpoint cosigns cp and stores both, returning the cosigned note;
// a checkpoint already stored at that size keeps its first cosignature.
func (s *Store) storeCheckpoint(ctx context.Context, tx pgx.Tx, origin string, cp *audit.Checkpoint) ([]byte, error) {
	line, err := s.cosign.Cosign(cp.Note)
	if err != nil {
		return nil, err
	}
	var note []byte
	var cosig string
	err = tx.QueryRow(ctx, `INSERT INTO checkpoints (origin, size, root, note, cosignature) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (origin, size) DO UPDATE SET origin = EXCLUDED.origin RETURNING note, cosignature`,
		origin, int64(cp.Size), cp.Root, cp.Note, line).Scan(&note, &cosig)
	if err != nil {
		return nil, fmt.Errorf("store checkpoint: %w", err)
	}
	return append(note, cosig...), nil
}

// notAtSize answers a request whose start is not the stored size. A
// smaller tree signed after the newest stored checkpoint is a rollback (a
// shipper only repeats a request whose answer it lost, and that request's
// checkpoint is the newest stored); a repeat of a stored range returns its
// cosigned checkpoint; a different signed tree at a stored size is a fork;
// anything else is a conflict carrying the stored size.
func (s *Store) notAtSize(ctx context.Context, tx pgx.Tx, st *logState, req *AddEntriesRequest, cp *audit.Checkpoint, v note.Verifier) (*AddEntriesResponse, error, error) {
	conflict := &IngestError{Err: ErrConflict, Size: st.size,
		Msg: fmt.Sprintf("start %d is not the size %d the collector holds of %s: resume from %d", req.Start, st.size, req.Origin, st.size)}
	if req.Start > st.size {
		return nil, conflict, nil
	}
	if cp.Size < st.size && st.checkpoint != nil {
		if last, err := audit.OpenCheckpoint(st.checkpoint, v); err == nil && cp.Time.After(last.Time) {
			detail := fmt.Sprintf("the host signed size %d at %s after size %d at %s: its log was rolled back",
				cp.Size, cp.Time.Format(time.RFC3339Nano), last.Size, last.Time.Format(time.RFC3339Nano))
			out, err := s.misbehave(ctx, tx, req.Origin, MisbehaviorRollback, detail, st.checkpoint, req.Checkpoint, nil)
			return nil, out, err
		}
	}
	var note []byte
	var root []byte
	var cosig string
	err := tx.QueryRow(ctx, "SELECT note, root, cosignature FROM checkpoints WHERE origin = $1 AND size = $2", req.Origin, int64(cp.Size)).
		Scan(&note, &root, &cosig)
	switch {
	case err == nil:
		if bytes.Equal(root, cp.Root) {
			return &AddEntriesResponse{Size: st.size, Checkpoint: append(note, cosig...)}, nil, nil
		}
		detail := fmt.Sprintf("the host signed two trees of size %d: roots %s (stored) and %s", cp.Size, b64(root), b64(cp.Root))
		out, err := s.misbehave(ctx, tx, req.Origin, MisbehaviorFork, detail, note, req.Checkpoint, nil)
		return nil, out, err
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, nil, err
	}
	return nil, conflict, nil
}

// misbehave records proven misbehavior and halts the log, in tx. It
// returns the error for the request.
func (s *Store) misbehave(ctx context.Context, tx pgx.Tx, origin, kind, detail string, stored, signed []byte, req *AddEntriesRequest) (error, error) {
	var evidence []byte
	if req != nil {
		var err error
		if evidence, err = json.Marshal(req); err != nil {
			return nil, err
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO misbehavior (origin, kind, detail, stored_checkpoint, new_checkpoint, evidence) VALUES ($1, $2, $3, $4, $5, $6)",
		origin, kind, detail, stored, signed, evidence); err != nil {
		return nil, fmt.Errorf("record misbehavior: %w", err)
	}
	if _, err := tx.Exec(ctx, "UPDATE log_state SET halted = $2 WHERE origin = $1", origin, kind+": "+detail); err != nil {
		return nil, fmt.Errorf("record misbehavior: %w", err)
	}
	s.logger.Error("host log misbehavior", "origin", origin, "kind", kind, "detail", detail)
	return fmt.Errorf("%w: %s: %s", ErrMisbehavior, kind, detail), nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func decodeRange(size uint64, b []byte) (*compact.Range, error) {
	if len(b)%audit.HashSize != 0 {
		return nil, fmt.Errorf("%d bytes is not a list of hashes", len(b))
	}
	hashes := make([][]byte, 0, len(b)/audit.HashSize)
	for i := 0; i < len(b); i += audit.HashSize {
		hashes = append(hashes, b[i:i+audit.HashSize])
	}
	return rangeFactory.NewRange(0, size, hashes)
}

// encodeRange concatenates r's hashes; the range of an empty log is an
// empty value, never NULL (the column is NOT NULL: a shipper's first
// probe of a log without records is stored like any other).
func encodeRange(r *compact.Range) []byte {
	b := make([]byte, 0, len(r.Hashes())*audit.HashSize)
	for _, h := range r.Hashes() {
		b = append(b, h...)
	}
	return b
}
