// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/ship"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/redirect"
)

// ErrDaemonNotRunning means nothing answers on the API socket.
var ErrDaemonNotRunning = errors.New("daemon not running")

// Status is what `tollgate status` shows.
type Status struct {
	Version    string            `json:"version"`
	PID        int               `json:"pid"`
	Started    time.Time         `json:"started"`
	HostID     string            `json:"host_id"`
	HostKey    string            `json:"host_key"` // checkpoint verifier key, as in host.pub
	ConfigHash string            `json:"config_hash"`
	Cgroup2    string            `json:"cgroup2"`
	PinPath    string            `json:"pin_path"`
	Programs   []string          `json:"programs"`
	Counters   redirect.Counters `json:"counters"`
	Workloads  []workloadState   `json:"workloads"`
	Targets    []TargetStatus    `json:"targets"`
	Sessions   []sessionInfo     `json:"sessions"`
	Accepted   uint64            `json:"accepted"`
	LookupMiss uint64            `json:"lookup_miss"`
	Refused    uint64            `json:"refused"`
	Log        LogStatus         `json:"log"`
	Extra      map[string]string `json:"extra,omitempty"`
}

// TargetStatus is one target in Status.
type TargetStatus struct {
	Name         string   `json:"name"`
	Protocol     string   `json:"protocol"`
	Listen       []string `json:"listen"`
	Destinations []string `json:"destinations"`
	Problem      string   `json:"problem,omitempty"`
}

// LogStatus describes the audit log in Status.
type LogStatus struct {
	Path    string `json:"path"`
	ID      string `json:"id"`
	Records uint64 `json:"records"`
	// Unstored counts the durable records that are only in the journal
	// so far (audit.Log.Unstored).
	Unstored int    `json:"unstored"`
	Bytes    int64  `json:"bytes"`
	Healthy  bool   `json:"healthy"`
	Error    string `json:"error,omitempty"`
	// LastCheckpoint describes the newest signed checkpoint ("size N,
	// signed T"); CheckpointSize and CheckpointTime are the same as data.
	LastCheckpoint string    `json:"last_checkpoint"`
	CheckpointSize uint64    `json:"checkpoint_size"`
	CheckpointTime time.Time `json:"checkpoint_time"`
	// ShippingLag summarises shipping in one line; Shipping has the
	// details (nil when audit.ship.url is not set).
	ShippingLag string       `json:"shipping_lag"`
	Shipping    *ship.Status `json:"shipping,omitempty"`
	// Retention says what audit.retention does (RetentionText); Pruned
	// is what it removed so far: records [0, Pruned.Below).
	Retention string           `json:"retention"`
	Pruned    audit.PruneState `json:"pruned"`
}

func (a *Agent) status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		Version:    a.opts.Version,
		PID:        os.Getpid(),
		Started:    a.started.UTC(),
		HostID:     a.hostID,
		HostKey:    a.hostKey.VerifierKey,
		ConfigHash: a.cfgHash,
		Cgroup2:    a.cgroup2,
		PinPath:    a.pinPath,
		Workloads:  append([]workloadState(nil), a.workloads...),
		Accepted:   a.accepted.Load(),
		LookupMiss: a.lookupMiss.Load(),
		Refused:    a.refused.Load(),
	}
	st.Programs = a.redir.Attached()
	if c, err := a.redir.Counters(); err == nil {
		st.Counters = c
	}
	for _, tc := range a.cfg.Targets {
		ts := a.targets[tc.Name]
		if ts == nil {
			continue
		}
		t := TargetStatus{Name: tc.Name, Protocol: string(tc.Protocol), Problem: ts.resolveErr}
		for _, ln := range []*net.TCPListener{ts.ln4, ts.ln6} {
			if ln != nil {
				t.Listen = append(t.Listen, ln.Addr().String())
			}
		}
		for i, p := range ts.prefixes {
			if p.IsSingleIP() {
				t.Destinations = append(t.Destinations, netip.AddrPortFrom(p.Addr(), ts.ports[i]).String())
			} else if p.Addr().Is6() {
				t.Destinations = append(t.Destinations, fmt.Sprintf("[%s]:%d", p, ts.ports[i]))
			} else {
				t.Destinations = append(t.Destinations, fmt.Sprintf("%s:%d", p, ts.ports[i]))
			}
		}
		if ts.uln != nil {
			t.Listen = append(t.Listen, ts.usock)
		}
		for _, p := range ts.sockets {
			t.Destinations = append(t.Destinations, policy.UnixPrefix+p)
		}
		lports := make([]int, 0, len(ts.localDial))
		for p := range ts.localDial {
			lports = append(lports, int(p))
		}
		sort.Ints(lports)
		for _, p := range lports {
			t.Destinations = append(t.Destinations, fmt.Sprintf("local:%d", p))
		}
		st.Targets = append(st.Targets, t)
	}
	for _, s := range a.open {
		st.Sessions = append(st.Sessions, *s)
	}
	path := filepath.Join(a.cfg.StateDir, LogFile)
	st.Log = LogStatus{Path: path, ID: a.alog.ID(), Records: a.alog.Size(), Unstored: a.alog.Unstored(), Healthy: true,
		LastCheckpoint: "none yet", ShippingLag: "not shipping (no ship.url)"}
	if cp, err := a.alog.LastCheckpoint(); err == nil {
		st.Log.CheckpointSize, st.Log.CheckpointTime = cp.Size, cp.Time
		st.Log.LastCheckpoint = fmt.Sprintf("size %d, signed %s (%s ago)", cp.Size,
			cp.Time.Format(time.RFC3339), time.Since(cp.Time).Round(time.Second))
	}
	st.Log.Retention, st.Log.Pruned = RetentionText(a.cfg), a.alog.Pruned()
	if a.shipper != nil {
		ss := a.shipper.Status()
		st.Log.Shipping = &ss
		st.Log.ShippingLag = fmt.Sprintf("to %s: collector holds %d, cosigned %d, lag %d records (%.1fs)",
			ss.URL, ss.Shipped, ss.Cosigned, ss.LagRecords, ss.LagSeconds)
		if ss.LastError != "" {
			st.Log.ShippingLag += "; last error: " + ss.LastError
		}
	}
	if fi, err := os.Stat(path); err == nil {
		st.Log.Bytes = fi.Size()
	}
	if err := a.alog.Healthy(); err != nil {
		st.Log.Healthy = false
		st.Log.Error = err.Error()
	}
	return st
}

// serveAPI listens on the unix socket and serves the API.
//
// Who may connect is decided by the socket file: mode 0660 with group
// tollgate when that group exists (its members may use the CLI), else 0600
// (root only). The socket is made in a private directory, given its mode
// and owner there, and only then renamed into place, so nobody can connect
// during a window with looser permissions. Each connection's caller is
// identified by SO_PEERCRED; state-changing calls also need an approver's
// OIDC ID token and are recorded.
func (a *Agent) serveAPI(path string) (io.Closer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("api socket %s: another daemon is serving it", path)
	}
	ln, err := listenAPISocket(path)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.status())
	})
	mux.HandleFunc("GET /v1/audit/tail", a.handleTail)
	a.serveAuditAPI(mux)
	a.serveControlAPI(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return a.ctx },
		ConnContext: peerConnContext}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server stopped", "error", err)
		}
	}()
	return closerFunc(func() error {
		err := srv.Close()
		_ = os.Remove(path)
		return err
	}), nil
}

// APISocketGroup is the group whose members may use the API socket.
const APISocketGroup = "tollgate"

// apiSocketMode returns the socket's mode and group: 0660 and the
// tollgate group when it exists, else 0600 and the daemon's own group.
func apiSocketMode() (os.FileMode, int) {
	if g, err := user.LookupGroup(APISocketGroup); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			return 0o660, gid
		}
	}
	return 0o600, -1
}

// listenAPISocket creates the listening socket at path with its final
// mode and group before anyone can reach it.
func listenAPISocket(path string) (*net.UnixListener, error) {
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".api-sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmpDir)
	if err := os.Chmod(tmpDir, 0o700); err != nil {
		return nil, err
	}
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Close must not unlink the temporary name after the rename.
	ln.SetUnlinkOnClose(false)
	mode, gid := apiSocketMode()
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			// Not allowed to hand the socket to the group (a daemon
			// not running as root): owner only, never wider.
			mode = 0o600
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, err
	}
	_ = os.Remove(path)
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// handleTail writes the newest n records, one stored record per line, and
// with follow=1 keeps streaming new ones until the client goes away.
func (a *Agent) handleTail(w http.ResponseWriter, r *http.Request) {
	n := 10
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		n = v
	}
	follow := r.URL.Query().Get("follow") == "1"
	w.Header().Set("Content-Type", "application/jsonl")
	bw := bufio.NewWriter(w)
	if err := StreamTail(r.Context(), a.alog, n, follow, func(b []byte) error {
		if _, err := bw.Write(b); err != nil {
			return err
		}
		return bw.WriteByte('\n')
	}, func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		return nil
	}); err != nil && !errors.Is(err, context.Canceled) {
		a.log.Debug("tail stream ended", "error", err)
	}
	_ = bw.Flush()
}

// StreamTail calls emit with the stored bytes of the newest n records, and
// with follow keeps emitting new records as they become durable until ctx
// ends. flush is called after each batch.
func StreamTail(ctx context.Context, l *audit.Log, n int, follow bool, emit func([]byte) error, flush func() error) error {
	size := l.Size()
	// Records pruned by audit.retention are not on this host any more.
	from := l.Pruned().Below
	if uint64(n) < size {
		from = max(from, size-uint64(n))
	}
	for {
		for from < l.Size() {
			entries, err := l.Read(from, 1024)
			if p := l.Pruned().Below; errors.Is(err, audit.ErrPruned) && p > from {
				from = p // a prune overtook the reader: what is left goes on
				continue
			}
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				break
			}
			for _, e := range entries {
				if err := emit(e.Bytes); err != nil {
					return err
				}
				from = e.Seq + 1
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		if err := l.Wait(ctx, from); err != nil {
			return err
		}
	}
}

// Client talks to a running daemon over its API socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon serving socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tollgate"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: %v", ErrDaemonNotRunning, c.socket, err)
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("daemon: %s: %s", resp.Status, b)
	}
	return resp, nil
}

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	resp, err := c.get(ctx, "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode status: %w", err)
	}
	return st, nil
}

// Tail streams the newest n records (and, with follow, new ones) to emit,
// one stored record per call.
func (c *Client) Tail(ctx context.Context, n int, follow bool, emit func([]byte) error) error {
	q := "/v1/audit/tail?n=" + strconv.Itoa(n)
	if follow {
		q += "&follow=1"
	}
	resp, err := c.get(ctx, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		if err := emit(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read tail: %w", err)
	}
	return nil
}
