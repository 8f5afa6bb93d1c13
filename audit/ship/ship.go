// SPDX-License-Identifier: Apache-2.0

// Package ship is the host's shipper: it follows the local audit log and
// sends it, in order and in batches, to the central collector
// (audit/collector), keeping every checkpoint the collector cosigned
// beside the log. A record leaves the host's responsibility only when the
// collector has committed it and cosigned a checkpoint covering it; the
// shipper never deletes or skips anything, so a host that cannot ship keeps
// everything and tries again with exponential backoff and jitter.
//
// One request is in flight at a time. The first request after start is a
// probe (the host's current size, no entries): the collector either
// cosigns it or answers 409 with the size it holds, where shipping
// resumes. A request whose answer was lost is sent again byte for byte, so
// the collector recognises the repeat. When the collector proves
// misbehavior (422: the local log was edited, rolled back or forked after
// shipping) shipping stops with that error until the daemon restarts.
package ship

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
)

// Sentinel errors of the shipper.
var (
	// ErrHalted is the shipper's state after the collector proved the local
	// log inconsistent with what it shipped before (or the collector holds
	// more records than the local log): nothing more is sent.
	ErrHalted = errors.New("shipping halted")
	// ErrNotEnrolled is returned when the host has no credential and no
	// enrollment token.
	ErrNotEnrolled = errors.New("not enrolled with the collector")
)

// Backoff bounds.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 30 * time.Second
	// maxBatchBytes keeps a batch's JSON body (base64 entries) under the
	// collector's limit.
	maxBatchBytes = collector.MaxBodyBytes * 5 / 8
)

// Options configure a Shipper.
type Options struct {
	// URL is the collector's base URL (audit.ship.url).
	URL string
	// CA is a PEM file of CAs for the collector's certificate; empty
	// means the system roots.
	CA string
	// TokenFile holds the enrollment token, used when StateDir has no
	// credential yet.
	TokenFile string
	// Interval is how long the shipper gathers new records before it
	// sends them, once caught up.
	Interval time.Duration
	// StateDir is the daemon's state directory: credential and cosigned
	// checkpoints are kept there.
	StateDir string
	// HostID is the host's id, its name at the collector.
	HostID string
	// Key signs the checkpoint of each batch.
	Key *audit.HostKey
	// Log is the local audit log.
	Log *audit.Log
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
}

// Status is what `tollgate status` shows about shipping.
type Status struct {
	URL string `json:"url"`
	// Shipped is how many records the collector holds, as last heard.
	Shipped uint64 `json:"shipped"`
	// Cosigned is the size of the newest checkpoint the collector
	// cosigned.
	Cosigned uint64 `json:"cosigned"`
	// LagRecords is the local records not yet held by the collector.
	LagRecords uint64 `json:"lag_records"`
	// LagSeconds is how old the oldest unshipped record is.
	LagSeconds  float64   `json:"lag_seconds"`
	LastSuccess time.Time `json:"last_success"`
	LastError   string    `json:"last_error,omitempty"`
	Halted      bool      `json:"halted"`
}

// Shipper ships one log. Run drives it; Status may be called at any time.
type Shipper struct {
	opts   Options
	logger *slog.Logger
	client *http.Client

	mu       sync.Mutex
	cursor   uint64 // the collector's size, as last heard
	known    bool   // cursor was heard from the collector
	cosigned uint64
	// cosignedNote is the checkpoint of size cosigned with the
	// collector's cosignature (nil before the first).
	cosignedNote []byte
	lastSuccess  time.Time
	lastErr      error
	halted       bool

	cl   *cosignedLog
	cred *credential
	ver  *collector.CosignVerifier
}

// New returns a shipper for opts; it reads the credential and the cosigned
// checkpoints kept in the state directory.
func New(opts Options) (*Shipper, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	opts.URL = strings.TrimRight(opts.URL, "/")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if opts.CA != "" {
		pem, err := os.ReadFile(opts.CA)
		if err != nil {
			return nil, fmt.Errorf("shipper: ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("shipper: ca %s holds no PEM certificate", opts.CA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s := &Shipper{opts: opts, logger: opts.Logger, client: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
	var err error
	if s.cl, err = openCosigned(opts.StateDir); err != nil {
		return nil, fmt.Errorf("shipper: %w", err)
	}
	if s.cl.last != nil {
		s.cosigned = s.cl.last.Size
		s.cosignedNote = s.cl.last.Checkpoint
		s.cursor = s.cl.last.Size
	}
	if s.cred, err = loadCredential(opts.StateDir); err != nil {
		s.cl.f.Close()
		return nil, fmt.Errorf("shipper: %w", err)
	}
	if s.cred != nil {
		if s.ver, err = collector.NewCosignVerifier(s.cred.CollectorKey); err != nil {
			s.cl.f.Close()
			return nil, fmt.Errorf("shipper: %w", err)
		}
	}
	return s, nil
}

// Status returns the shipping state now.
func (s *Shipper) Status() Status {
	s.mu.Lock()
	st := Status{URL: s.opts.URL, Shipped: s.cursor, Cosigned: s.cosigned, LastSuccess: s.lastSuccess, Halted: s.halted}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	s.mu.Unlock()
	if size := s.opts.Log.Size(); size > st.Shipped {
		st.LagRecords = size - st.Shipped
		if es, err := s.opts.Log.Read(st.Shipped, 1); err == nil && len(es) == 1 {
			if r, err := es[0].Record(); err == nil {
				st.LagSeconds = time.Since(r.Time).Seconds()
			}
		}
	}
	return st
}

// LastCosigned returns the newest checkpoint the collector cosigned (the
// host's signed note with the collector's cosignature line), nil before
// the first. Retention prunes only below its size.
func (s *Shipper) LastCosigned() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cosignedNote
}

func (s *Shipper) setErr(err error) {
	s.mu.Lock()
	changed := s.lastErr == nil || err == nil || s.lastErr.Error() != err.Error()
	s.lastErr = err
	s.mu.Unlock()
	if changed && err != nil {
		s.logger.Warn("shipping", "url", s.opts.URL, "error", err)
	}
}

// Close releases the cosigned checkpoints file.
func (s *Shipper) Close() error { return s.cl.f.Close() }

// Run ships until ctx ends or the collector proves misbehavior; it
// returns nil when ctx ends and an error wrapping ErrHalted otherwise.
func (s *Shipper) Run(ctx context.Context) error {
	backoff := minBackoff
	wait := func() bool {
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, maxBackoff)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for s.cred == nil {
		err := s.enroll(ctx)
		if err == nil {
			break
		}
		s.setErr(err)
		if !wait() {
			return nil
		}
	}
	backoff = minBackoff
	var pending []byte // a request whose answer is outstanding
	var pendingEnd uint64
	lastSent := time.Time{}
	for ctx.Err() == nil {
		if pending == nil {
			var err error
			s.mu.Lock()
			cursor, known := s.cursor, s.known
			s.mu.Unlock()
			size := s.opts.Log.Size()
			switch {
			case !known:
				pending, pendingEnd, err = s.request(size, size)
			case cursor > size:
				// The collector holds more than we have: this log was
				// rolled back. The probe makes the collector record it.
				pending, pendingEnd, err = s.request(size, size)
			case cursor == size:
				if s.opts.Log.Wait(ctx, size) != nil {
					return nil
				}
				// Gather for the interval after the last send.
				if d := time.Until(lastSent.Add(s.opts.Interval)); d > 0 {
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(d):
					}
				}
				continue
			default:
				pending, pendingEnd, err = s.request(cursor, size)
			}
			if err != nil {
				s.setErr(err)
				pending = nil
				if !wait() {
					return nil
				}
				continue
			}
		}
		lastSent = time.Now()
		done, err := s.send(ctx, pending, pendingEnd)
		if errors.Is(err, ErrHalted) {
			s.mu.Lock()
			s.halted = true
			s.mu.Unlock()
			s.setErr(err)
			s.logger.Error("shipping halted", "error", err)
			return err
		}
		if done {
			pending = nil
		}
		if s.known && err == nil {
			s.mu.Lock()
			if local := s.opts.Log.Size(); s.cursor > local {
				err = fmt.Errorf("the collector holds %d records of this log, the local log only %d: it was rolled back or replaced", s.cursor, local)
			}
			s.mu.Unlock()
		}
		if err != nil {
			s.setErr(err)
			if !wait() {
				return nil
			}
			continue
		}
		backoff = minBackoff
	}
	return nil
}

// request builds the add-entries body for records [from, upto) of the
// local log, cut to the collector's limits, with a checkpoint signed for
// its end. from == upto is a probe.
func (s *Shipper) request(from, upto uint64) ([]byte, uint64, error) {
	var entries [][]byte
	if upto > from {
		es, err := s.opts.Log.Read(from, int(min(upto-from, collector.MaxRecords)))
		if err != nil {
			return nil, 0, fmt.Errorf("read local log: %w", err)
		}
		total := 0
		for _, e := range es {
			if total+len(e.Bytes) > maxBatchBytes && len(entries) > 0 {
				break
			}
			total += len(e.Bytes)
			entries = append(entries, e.Bytes)
		}
	}
	end := from + uint64(len(entries))
	root, err := s.opts.Log.Root(end)
	if err != nil {
		return nil, 0, fmt.Errorf("root of the local log at %d: %w", end, err)
	}
	cp, err := audit.SignCheckpoint(s.opts.Log.ID(), end, root, time.Now(), s.opts.Key.Signer)
	if err != nil {
		return nil, 0, err
	}
	body, err := json.Marshal(collector.AddEntriesRequest{Origin: s.opts.Log.ID(), Start: from, Entries: entries, Checkpoint: cp.Note})
	if err != nil {
		return nil, 0, err
	}
	return body, end, nil
}

// send posts one add-entries body. done reports that the body got a
// definitive answer (it must not be sent again); err says what went wrong.
func (s *Shipper) send(ctx context.Context, body []byte, end uint64) (done bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL+collector.PathAddEntries, bytes.NewReader(body))
	if err != nil {
		return true, fmt.Errorf("collector request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.cred.Credential)
	resp, err := s.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("collector unreachable: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, fmt.Errorf("collector answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var ar collector.AddEntriesResponse
		if err := json.Unmarshal(rb, &ar); err != nil {
			return false, fmt.Errorf("collector answer: %w", err)
		}
		if _, err := collector.VerifyCosigned(ar.Checkpoint, s.ver); err != nil {
			return false, fmt.Errorf("collector answer: %w", err)
		}
		hostv, err := audit.ParseVerifierKey(s.opts.Key.VerifierKey)
		if err != nil {
			return true, err
		}
		cp, err := audit.OpenCheckpoint(ar.Checkpoint, hostv)
		if err != nil || cp.Origin != s.opts.Log.ID() {
			return false, fmt.Errorf("collector answer: cosigned checkpoint is not this log's: %v", err)
		}
		if err := s.cl.append(Cosigned{Size: cp.Size, Checkpoint: ar.Checkpoint}); err != nil {
			return false, err
		}
		s.mu.Lock()
		s.cursor, s.known = ar.Size, true
		s.cosigned, s.cosignedNote = cp.Size, ar.Checkpoint
		s.lastSuccess = time.Now()
		s.lastErr = nil
		s.mu.Unlock()
		return true, nil
	case http.StatusConflict:
		var er collector.ErrorResponse
		if err := json.Unmarshal(rb, &er); err != nil || er.Size == nil {
			return true, fmt.Errorf("collector answered 409 without a size: %s", strings.TrimSpace(string(rb)))
		}
		s.mu.Lock()
		s.cursor, s.known = *er.Size, true
		s.mu.Unlock()
		if local := s.opts.Log.Size(); *er.Size > local {
			return true, fmt.Errorf("the collector holds %d records of this log, the local log only %d: it was rolled back or replaced", *er.Size, local)
		}
		return true, nil
	case http.StatusUnprocessableEntity:
		return true, fmt.Errorf("%w: collector refused the log: %s", ErrHalted, errorText(rb))
	case http.StatusRequestEntityTooLarge:
		return true, fmt.Errorf("collector refused a batch as too large (%d bytes): %s", len(body), errorText(rb))
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return false, fmt.Errorf("collector busy (%d): %s", resp.StatusCode, errorText(rb))
	default:
		return false, fmt.Errorf("collector answered %d: %s", resp.StatusCode, errorText(rb))
	}
}

func errorText(b []byte) string {
	var er collector.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		return er.Error
	}
	return strings.TrimSpace(string(b))
}

// enroll presents the enrollment token and keeps the credential.
func (s *Shipper) enroll(ctx context.Context) error {
	if s.opts.TokenFile == "" {
		return fmt.Errorf("%w: no credential in %s and no audit.ship.token_file (get one with `tollgate collector enroll --host %s`)", ErrNotEnrolled, s.opts.StateDir, s.opts.HostID)
	}
	tok, err := os.ReadFile(s.opts.TokenFile)
	if err != nil {
		return fmt.Errorf("%w: token: %w", ErrNotEnrolled, err)
	}
	body, err := json.Marshal(collector.EnrollRequest{Token: strings.TrimSpace(string(tok)), Host: s.opts.HostID,
		Origin: s.opts.Log.ID(), Key: s.opts.Key.VerifierKey})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL+collector.PathEnroll, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("enroll: collector unreachable: %w", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: collector answered %d: %s", ErrNotEnrolled, resp.StatusCode, errorText(rb))
	}
	var er collector.EnrollResponse
	if err := json.Unmarshal(rb, &er); err != nil {
		return fmt.Errorf("enroll: collector answer: %w", err)
	}
	ver, err := collector.NewCosignVerifier(er.CollectorKey)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	cred := &credential{URL: s.opts.URL, Credential: er.Credential, CollectorKey: er.CollectorKey}
	if err := saveCredential(s.opts.StateDir, cred); err != nil {
		return err
	}
	s.cred, s.ver = cred, ver
	s.logger.Info("enrolled with the collector", "url", s.opts.URL, "collector_key", er.CollectorKey)
	return nil
}
