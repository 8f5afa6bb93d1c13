// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// serveAuditAPI registers the evidence endpoints of the API socket.
func (a *Agent) serveAuditAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/audit/checkpoint", a.handleCheckpoint)
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
