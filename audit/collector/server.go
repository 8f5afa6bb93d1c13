// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// maxInFlight bounds concurrent ingests per replica; more get 429.
const maxInFlight = 32

// Observer watches the service, for metrics. Its methods must return at
// once.
type Observer interface {
	// Answered reports a request: its route, the HTTP status it got,
	// how long it took, and the records it carried when it was an
	// add-entries answered 200 (a repeat of a stored range included).
	Answered(route string, status int, took time.Duration, records int)
}

// Server is the collector's HTTP service over a Store.
type Server struct {
	store    *Store
	logger   *slog.Logger
	sem      chan struct{}
	observer Observer
	// bufs holds *[]byte buffers for add-entries bodies and their decoded
	// entries: a batch is megabytes, and a fresh buffer per request is
	// zeroed by the allocator and, read with io.ReadAll, grown by copying
	// (together 6% of the collector's CPU at ingest).
	bufs sync.Pool
}

// NewServer returns the HTTP service of store; observer may be nil.
func NewServer(store *Store, logger *slog.Logger, observer Observer) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{store: store, logger: logger, sem: make(chan struct{}, maxInFlight), observer: observer}
}

// statusWriter keeps the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status  int
	records int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// observed wraps a route's handler so the observer sees each answer.
func (s *Server) observed(route string, h http.HandlerFunc) http.HandlerFunc {
	if s.observer == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		s.observer.Answered(route, sw.status, time.Since(start), sw.records)
	}
}

// Handler returns the protocol's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathAddEntries, s.observed("add-entries", s.handleAddEntries))
	mux.HandleFunc("POST "+PathEnroll, s.observed("enroll", s.handleEnroll))
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.store.pool.Ping(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, "database unreachable", nil)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, size *uint64) {
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, ErrorResponse{Error: msg, Size: size})
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrBadSignature):
		return http.StatusForbidden
	case errors.Is(err, ErrConflict), errors.Is(err, ErrEnrolled):
		return http.StatusConflict
	case errors.Is(err, ErrMisbehavior), errors.Is(err, ErrUnprocessable):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrBusy):
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	var size *uint64
	var ie *IngestError
	if errors.As(err, &ie) && errors.Is(err, ErrConflict) {
		size = &ie.Size
	}
	msg := err.Error()
	if code == http.StatusInternalServerError {
		s.logger.Error("request failed", "path", r.URL.Path, "error", err)
		msg = "internal error; see the collector's log"
	} else {
		s.logger.Info("request refused", "path", r.URL.Path, "status", code, "error", err)
	}
	writeError(w, code, msg, size)
}

func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(a, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func (s *Server) handleAddEntries(w http.ResponseWriter, r *http.Request) {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.fail(w, r, fmt.Errorf("%w: %d requests in flight", ErrBusy, maxInFlight))
		return
	}
	h, err := s.store.Authenticate(r.Context(), bearer(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Neither buffer outlives the handler: the request refers to the
	// arena until Ingest has copied the records to the database, and the
	// answer is built from the checkpoint, which has its own slice.
	bodyBuf, arenaBuf := s.buffer(), s.buffer()
	defer s.bufs.Put(bodyBuf)
	defer s.bufs.Put(arenaBuf)
	body, err := readBody(w, r, *bodyBuf)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	*bodyBuf = body
	if m := base64.StdEncoding.DecodedLen(len(body)); cap(*arenaBuf) < m {
		*arenaBuf = make([]byte, 0, m)
	}
	req, err := decodeAddEntries(body, (*arenaBuf)[:0])
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.store.Ingest(r.Context(), h, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.records = len(req.Entries)
	}
	writeJSON(w, http.StatusOK, resp)
}

// buffer returns a buffer of bufs, or a new empty one.
func (s *Server) buffer() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := DecodeEnroll(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.store.Enroll(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Open connects to the database of cfg, runs the migrations and loads the
// signing key: everything serve, enroll and hosts need.
func Open(ctx context.Context, cfg *Config, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pc, err := cfg.PoolConfig()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if _, err := Migrate(ctx, pool, logger); err != nil {
		pool.Close()
		return nil, err
	}
	c, err := LoadOrCreateCosigner(cfg.SigningKey, "tollgate-collector")
	if err != nil {
		pool.Close()
		return nil, err
	}
	return NewStore(pool, c, logger), nil
}

// Close closes the database pool.
func (s *Store) Close() { s.pool.Close() }

// Cosigner returns the store's cosigner.
func (s *Store) Cosigner() *Cosigner { return s.cosign }

// Serve runs the collector until ctx ends: the HTTP service on cfg.Listen
// (TLS unless insecure_loopback) and the silence watch. ready, if not nil,
// is called with the listening address.
func Serve(ctx context.Context, cfg *Config, store *Store, logger *slog.Logger, observer Observer, ready func(addr string)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: NewServer(store, logger, observer).Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 2 * time.Minute, WriteTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	if cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			ln.Close()
			return fmt.Errorf("tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	silence := time.Duration(cfg.SilenceAfter)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		store.watchSilence(ctx, silence)
	}()
	retention := time.Duration(cfg.Retention)
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		store.watchRetention(ctx, retention)
	}()
	if retention > 0 {
		logger.Info("collector retention", "retention", cfg.Retention.String(),
			"what", "day partitions of records older than this are dropped; their leaf hashes stay")
	} else {
		logger.Info("collector retention", "retention", "none", "what", "every record is kept")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("collector serving", "listen", ln.Addr().String(), "tls", cfg.TLS.Cert != "", "key", store.cosign.VerifierKey)
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
	}
	<-watchDone
	<-retentionDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// watchSilence flags hosts silent for longer than after, until ctx ends.
func (s *Store) watchSilence(ctx context.Context, after time.Duration) {
	tick := time.NewTicker(min(max(after/4, 100*time.Millisecond), 30*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := s.CheckSilence(ctx, after); err != nil && ctx.Err() == nil {
			s.logger.Warn("silence check failed", "error", err)
		}
	}
}

// CheckSilence flags every enrolled log not heard from for longer than
// after (once per silence: the flag clears when the host ships again) and
// returns the origins newly flagged. Replicas running it together flag
// each silence once.
func (s *Store) CheckSilence(ctx context.Context, after time.Duration) ([]string, error) {
	rows, err := s.pool.Query(ctx, `WITH silent AS (
			UPDATE log_state SET silent_since = now()
			WHERE silent_since IS NULL AND last_seen < now() - $1::interval
			RETURNING origin, last_seen)
		INSERT INTO misbehavior (origin, kind, detail)
			SELECT origin, $2, 'nothing received since ' || to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' (silence_after ' || $3 || ')' FROM silent
		RETURNING origin`, fmt.Sprintf("%d microseconds", after.Microseconds()), MisbehaviorSilence, after.String())
	if err != nil {
		return nil, fmt.Errorf("silence check: %w", err)
	}
	var origins []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			rows.Close()
			return nil, fmt.Errorf("silence check: %w", err)
		}
		origins = append(origins, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("silence check: %w", err)
	}
	for _, o := range origins {
		s.logger.Warn("host silent", "origin", o, "silence_after", after)
	}
	return origins, nil
}
