// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/audit/ship"
)

// serveAuditAPI registers the evidence endpoints of the API socket.
func (a *Agent) serveAuditAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/audit/checkpoint", a.handleCheckpoint)
	mux.HandleFunc("GET /v1/audit/export", a.handleExport)
	mux.HandleFunc("GET /v1/audit/records", a.handleRecords)
}

// handleRecords streams the records a filter selects (session, since,
// until), one stored record per line, in seq order.
func (a *Agent) handleRecords(w http.ResponseWriter, r *http.Request) {
	opts, err := parseExportQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	bw := bufio.NewWriter(w)
	wrote := false
	err = a.alog.Select(r.Context(), audit.Filter{Session: opts.Session, Since: opts.Since, Until: opts.Until}, func(e audit.Entry) error {
		if !wrote {
			w.Header().Set("Content-Type", "application/jsonl")
			wrote = true
		}
		if _, err := bw.Write(e.Bytes); err != nil {
			return err
		}
		return bw.WriteByte('\n')
	})
	if err == nil {
		err = bw.Flush()
	}
	if errors.Is(err, audit.ErrPruned) && !wrote {
		// Select refuses before the first record: the client gets the
		// reason, naming the pruned range, not a cut stream.
		http.Error(w, err.Error(), http.StatusGone)
		return
	}
	if err != nil {
		a.log.Debug("records stream ended", "error", err)
		panic(http.ErrAbortHandler)
	}
}

// Records streams the stored bytes of the records f selects to emit, in
// seq order.
func (c *Client) Records(ctx context.Context, f audit.Filter, emit func([]byte) error) error {
	q := ExportQuery(evidence.ExportOptions{Session: f.Session, Since: f.Since, Until: f.Until})
	resp, err := c.get(ctx, "/v1/audit/records?"+q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), audit.MaxRecordSize+1)
	for sc.Scan() {
		if err := emit(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	return nil
}

// ExportQuery encodes export options as the query of GET /v1/audit/export.
func ExportQuery(opts evidence.ExportOptions) url.Values {
	q := url.Values{}
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	if !opts.Until.IsZero() {
		q.Set("until", opts.Until.UTC().Format(time.RFC3339Nano))
	}
	if opts.Session != "" {
		q.Set("session", opts.Session)
	}
	for _, s := range opts.ProveFrom {
		q.Add("prove_from", strconv.FormatUint(s, 10))
	}
	if opts.Witnessed {
		q.Set("witnessed", "1")
	}
	return q
}

// parseExportQuery is the inverse of ExportQuery.
func parseExportQuery(q url.Values) (evidence.ExportOptions, error) {
	var opts evidence.ExportOptions
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &opts.Since}, {"until", &opts.Until}} {
		if s := q.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return opts, fmt.Errorf("%s: %w", f.name, err)
			}
			*f.dst = t
		}
	}
	opts.Session = q.Get("session")
	opts.Witnessed = q.Get("witnessed") == "1"
	for _, s := range q["prove_from"] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return opts, fmt.Errorf("prove_from %q is not a tree size", s)
		}
		opts.ProveFrom = append(opts.ProveFrom, n)
	}
	return opts, nil
}

// handleExport streams an evidence bundle. Errors found while planning are
// answered with a status; an error while streaming aborts the connection,
// so the client never takes a truncated bundle for a whole one.
func (a *Agent) handleExport(w http.ResponseWriter, r *http.Request) {
	opts, err := parseExportQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	opts.Tool = "tollgate " + a.opts.Version
	if opts.Witnessed {
		a.mu.Lock()
		dir := a.cfg.StateDir
		a.mu.Unlock()
		if opts.Cosigned, err = CosignedNotes(dir); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	ex, err := evidence.PrepareExport(r.Context(), a.alog, opts)
	if err != nil {
		code := http.StatusServiceUnavailable
		switch {
		case errors.Is(err, audit.ErrPruned):
			code = http.StatusGone
		case errors.Is(err, audit.ErrNoRecords) || errors.Is(err, audit.ErrRange) || errors.Is(err, audit.ErrNoCheckpoint):
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return
	}
	m := ex.Manifest()
	a.log.Info("exporting evidence", "begin", m.Begin, "end", m.End, "tree_size", m.TreeSize, "session", m.Session)
	w.Header().Set("Content-Type", "application/x-tar")
	if _, err := ex.WriteTo(r.Context(), w); err != nil {
		a.log.Error("evidence export failed while streaming", "error", err)
		panic(http.ErrAbortHandler)
	}
}

// Export streams an evidence bundle from the daemon into w. It fails if
// the daemon aborts the stream.
func (c *Client) Export(ctx context.Context, opts evidence.ExportOptions, w io.Writer) error {
	resp, err := c.get(ctx, "/v1/audit/export?"+ExportQuery(opts).Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("receive bundle: %w", err)
	}
	return nil
}

// handleCheckpoint signs any unsigned records and returns the newest
// checkpoint note.
func (a *Agent) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := a.alog.Checkpoint(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(cp.Note)
}

// Checkpoint returns the daemon's newest signed checkpoint note, after it
// signed every record durable at the time of the call.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	resp, err := c.get(ctx, "/v1/audit/checkpoint")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	if len(b) == 0 {
		return nil, errors.New("daemon returned an empty checkpoint")
	}
	return b, nil
}

// CosignedNotes returns the checkpoints the collector cosigned that the
// shipper keeps in stateDir (oldest first), for witnessed exports.
func CosignedNotes(stateDir string) ([][]byte, error) {
	cs, err := ship.ReadCosigned(stateDir)
	if err != nil {
		return nil, err
	}
	notes := make([][]byte, len(cs))
	for i, c := range cs {
		notes[i] = c.Checkpoint
	}
	return notes, nil
}
