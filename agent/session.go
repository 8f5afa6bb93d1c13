// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/agent/postgres"
	sshproxy "github.com/tollgate-dev/tollgate/agent/ssh"
	"github.com/tollgate-dev/tollgate/agent/tcp"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/redirect"
)

// upstreamDialTimeout bounds the proxy's connect to the real destination.
const upstreamDialTimeout = 10 * time.Second

// sessionInfo is an open session, as status shows it.
type sessionInfo struct {
	ID      string    `json:"id"`
	Target  string    `json:"target"`
	Dst     string    `json:"dst"`
	PID     uint32    `json:"pid"`
	UID     uint32    `json:"uid"`
	Comm    string    `json:"comm"`
	Started time.Time `json:"started"`
}

// startAccepting runs the accept loops of a target's listeners. Caller
// holds a.mu.
func (a *Agent) startAccepting(ts *targetState) {
	for _, ln := range []*net.TCPListener{ts.ln4, ts.ln6} {
		if ln == nil {
			continue
		}
		go a.acceptLoop(ts, ln)
	}
	a.startAcceptingUnix(ts)
}

// startAcceptingUnix runs the accept loop of the target's unix socket, once
// per socket (a reload may open one for a kept target). Caller holds a.mu.
func (a *Agent) startAcceptingUnix(ts *targetState) {
	if ts.uln != nil && !ts.ulnAccepting {
		ts.ulnAccepting = true
		go a.acceptLoopUnix(ts, ts.uln)
	}
}

func (a *Agent) acceptLoop(ts *targetState, ln *net.TCPListener) {
	a.serveListener(ts, func() (net.Conn, error) { return ln.AcceptTCP() },
		func(c net.Conn) { a.handle(ts, c.(*net.TCPConn)) })
}

// serveListener accepts until the listener is closed and serves each
// connection in its own goroutine, counted for a clean stop. Temporary
// errors (EMFILE, ENFILE) back off instead of ending the loop.
func (a *Agent) serveListener(ts *targetState, accept func() (net.Conn, error), handle func(net.Conn)) {
	var delay time.Duration
	for {
		c, err := accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			a.log.Warn("accept failed", "target", ts.cfg.Name, "error", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		a.accepted.Add(1)
		a.sessions.Add(1)
		go func() {
			defer a.sessions.Done()
			handle(c)
		}()
	}
}

// handle serves one accepted connection from the lookup to session.end.
func (a *Agent) handle(listenerTarget *targetState, c *net.TCPConn) {
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	origin, err := a.redir.Lookup(peer)
	if err != nil {
		// Not redirected by us (a local process dialled the listener
		// directly) or the entry was lost: never guess a destination.
		a.lookupMiss.Add(1)
		if listenerTarget.cfg.Protocol == policy.ProtocolPostgres {
			a.servePostgresCancel(listenerTarget, c, peer.String())
			return
		}
		a.log.Warn("closing connection without origin", "peer", peer.String(), "target", listenerTarget.cfg.Name, "error", err)
		c.Close()
		return
	}
	a.mu.Lock()
	ts := a.byID[origin.TargetID]
	var upstream netip.AddrPort
	upOK := false
	if ts != nil {
		upstream, upOK = upstreamAddr(ts, origin.Dst)
	}
	a.mu.Unlock()
	if ts == nil || ts != listenerTarget {
		a.refused.Add(1)
		a.log.Warn("closing connection for an unknown target", "peer", peer.String(), "target_id", origin.TargetID)
		c.Close()
		return
	}
	if !upOK {
		// Matched by port as a local destination, but the target is no
		// longer a local service (config or addresses changed since).
		a.refused.Add(1)
		a.log.Warn("closing connection: no upstream for its destination", "peer", peer.String(), "target", ts.cfg.Name, "dst", origin.Dst.String())
		c.Close()
		return
	}

	switch ts.cfg.Protocol {
	case policy.ProtocolPostgres:
		a.handlePostgres(ts, c, origin, upstream, "", peer.String())
		return
	case policy.ProtocolSSH:
		a.handleSSH(ts, c, origin, upstream, peer)
		return
	}

	start := time.Now()
	id := newSessionID(start)
	proc := processRecord(origin)
	base := audit.Record{
		Session: id,
		Target:  ts.cfg.Name,
		Dst:     origin.Dst.String(),
		Process: proc,
	}
	startRec := base
	startRec.Kind = audit.KindSessionStart
	startRec.Client = peer.String()
	startRec.Listener = c.LocalAddr().String()
	startRec.Detail = map[string]string{audit.DetailProtocol: string(ts.cfg.Protocol), audit.DetailWorkload: a.workloadName(origin.WorkloadID)}
	// The session's traffic is relayed only once this record is durable:
	// if the log cannot be written, the session is refused (fail closed).
	if err := a.record(&startRec); err != nil {
		a.refused.Add(1)
		a.log.Error("refusing session: audit log unwritable", "session", id, "target", ts.cfg.Name, "error", err)
		c.Close()
		return
	}
	info := &sessionInfo{ID: id, Target: ts.cfg.Name, Dst: origin.Dst.String(), PID: origin.Process.PID,
		UID: origin.Process.UID, Comm: origin.Process.Comm, Started: start}
	defer a.track(info)()

	end := base
	end.Kind = audit.KindSessionEnd
	up, err := dialMarked(a.ctx, a.mark, upstream.String(), upstreamDialTimeout)
	if err != nil {
		c.Close()
		end.CloseReason = "upstream dial failed"
		end.Error = err.Error()
		end.DurationNS = time.Since(start).Nanoseconds()
		a.rec.RecordEventually(&end)
		a.log.Warn("upstream dial failed", "session", id, "dst", origin.Dst.String(), "upstream", upstream.String(), "error", err)
		return
	}
	tcp.SetKeepAlive(c)
	tcp.SetKeepAlive(up)
	st := tcp.Relay(a.ctx, c, up)
	end.Bytes = &audit.Bytes{Up: uint64(st.Up), Down: uint64(st.Down)}
	end.DurationNS = time.Since(start).Nanoseconds()
	end.CloseReason = st.Reason
	if st.Err != nil {
		end.Error = st.Err.Error()
	}
	a.rec.RecordEventually(&end)
}

func (a *Agent) workloadName(id uint32) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workloads {
		if w.ID == id {
			return w.Name
		}
	}
	return ""
}

// processRecord completes the kernel's identity with what /proc still
// tells about the process (it may have exited already; the kernel's fields
// stay authoritative).
func processRecord(o redirect.Origin) *audit.Process {
	p := &audit.Process{
		Pid:      o.Process.PID,
		Tid:      o.Process.TID,
		UID:      o.Process.UID,
		GID:      o.Process.GID,
		Comm:     o.Process.Comm,
		CgroupID: o.Process.CgroupID,
	}
	if exe, err := os.Readlink("/proc/" + strconv.FormatUint(uint64(o.Process.PID), 10) + "/exe"); err == nil {
		p.Exe = exe
	}
	if cg, err := redirect.ProcessCgroup(o.Process.PID); err == nil {
		p.Cgroup = cg
	}
	return p
}

// handlePostgres hands a connection to the PostgreSQL handler, which
// records the session itself once the client has said who it is: the
// session.start record then carries the identity, database and user, and
// is durable before anything reaches the server.
// upstream is where the proxy dials (see upstreamAddr), or socket, the
// path of the server's unix socket; the records name the destination the
// client asked for. client is the client's address as records show it.
func (a *Agent) handlePostgres(ts *targetState, c net.Conn, origin redirect.Origin, upstream netip.AddrPort, socket, client string) {
	start := time.Now()
	id := newSessionID(start)
	a.mu.Lock()
	tcfg, tlsConf, identities, hash, ver := ts.cfg, ts.tls, a.cfg.Identities, a.cfgHash, a.oidc
	masker := a.maskers[tcfg.Name]
	listener := listenerName(ts, c)
	a.mu.Unlock()
	dst := origin.Dst.String()
	if socket != "" {
		dst = policy.UnixPrefix + origin.Path
	}
	sess := postgres.Session{
		Target:     tcfg,
		Dst:        upstream,
		Socket:     socket,
		ServerName: serverName(tcfg, upstream),
		Base: audit.Record{Session: id, Target: tcfg.Name, Dst: dst, Client: client,
			Listener: listener, Process: processRecord(origin)},
		Detail:     map[string]string{audit.DetailWorkload: a.workloadName(origin.WorkloadID)},
		Identities: identities,
		PolicyHash: hash,
		TLS:        tlsConf,
		Masker:     masker,
	}
	if ver != nil {
		sess.Verifier = ver
	}
	info := &sessionInfo{ID: id, Target: tcfg.Name, Dst: dst, PID: origin.Process.PID,
		UID: origin.Process.UID, Comm: origin.Process.Comm, Started: start}
	defer a.track(info)()
	st := a.pg.Serve(a.ctx, c, sess)
	if st.Reason == postgres.ReasonAudit {
		a.refused.Add(1)
	}
}

// servePostgresCancel serves a connection to a postgres listener that has
// no origin. libpq and pgx send a CancelRequest to the address their
// session's socket is connected to, which is the listener itself, so
// cancels arrive without an origin. Only a CancelRequest carrying a key
// tollgate handed to one of its sessions is acted on; anything else is
// closed unanswered, as before.
func (a *Agent) servePostgresCancel(ts *targetState, c net.Conn, client string) {
	a.mu.Lock()
	name, tlsConf := ts.cfg.Name, ts.tls
	listener := listenerName(ts, c)
	a.mu.Unlock()
	sess := postgres.Session{
		Base:       audit.Record{Session: newSessionID(time.Now()), Target: name, Client: client, Listener: listener},
		TLS:        tlsConf, // libpq 17 sends cancels over TLS when the session used it
		CancelOnly: true,
	}
	a.pg.Serve(a.ctx, c, sess)
}

// listenerName names the listener that accepted c in records: its address,
// or for the target's unix socket its path (the socket was bound under a
// temporary name and renamed, which its own address still shows). Caller
// holds a.mu.
func listenerName(ts *targetState, c net.Conn) string {
	if _, ok := c.(*net.UnixConn); ok && ts.usock != "" {
		return ts.usock
	}
	return c.LocalAddr().String()
}

// serverName is the name an upstream certificate is checked against: the
// target's host name for this port, if its matches name one.
func serverName(t policy.Target, dst netip.AddrPort) string {
	ms, _ := t.Matches()
	for _, m := range ms {
		if m.Host != "" && m.Port == dst.Port() {
			return m.Host
		}
	}
	return ""
}

// dialUpstream dials a real server with the daemon's mark, so that the
// connection is not redirected back to the proxy. network "unix" dials a
// socket path; anything else is TCP.
func (a *Agent) dialUpstream(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "unix" {
		d := net.Dialer{Timeout: upstreamDialTimeout, Control: markControl(a.mark)}
		return d.DialContext(ctx, "unix", addr)
	}
	return dialMarked(ctx, a.mark, addr, upstreamDialTimeout)
}

// newOIDCVerifier returns the token verifier for cfg's issuers, nil when
// there are none. Its discovery and key requests use marked sockets too.
func (a *Agent) newOIDCVerifier(cfg policy.Config) *postgres.OIDCVerifier {
	if len(cfg.OIDC.Issuers) == 0 {
		return nil
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: a.dialUpstream}}
	return postgres.NewOIDCVerifier(cfg.OIDC.Issuers, client)
}

// handleSSH hands a connection to the SSH handler, which records the
// session once the client's handshake is done, before the target sees a
// login.
func (a *Agent) handleSSH(ts *targetState, c *net.TCPConn, origin redirect.Origin, upstream, peer netip.AddrPort) {
	start := time.Now()
	id := newSessionID(start)
	a.mu.Lock()
	tcfg, identities, ver := ts.cfg, a.cfg.Identities, a.oidc
	masker := a.maskers[tcfg.Name]
	a.mu.Unlock()
	sess := sshproxy.Session{
		Masker: masker,
		Target: tcfg,
		Dst:    upstream,
		Base: audit.Record{Session: id, Target: tcfg.Name, Dst: origin.Dst.String(), Client: peer.String(),
			Listener: c.LocalAddr().String(), Process: processRecord(origin)},
		Detail:     map[string]string{audit.DetailWorkload: a.workloadName(origin.WorkloadID)},
		Identities: identities,
	}
	if ver != nil { // a nil *OIDCVerifier must not become a non-nil interface
		sess.Verifier = ver
	}
	info := &sessionInfo{ID: id, Target: tcfg.Name, Dst: origin.Dst.String(), PID: origin.Process.PID,
		UID: origin.Process.UID, Comm: origin.Process.Comm, Started: start}
	defer a.track(info)()
	tcp.SetKeepAlive(c)
	st := a.ssh.Serve(a.ctx, c, sess)
	if st.Reason == sshproxy.ReasonAudit {
		a.refused.Add(1)
	}
}

// track lists an open session for status until the returned func is
// called.
func (a *Agent) track(info *sessionInfo) func() {
	a.mu.Lock()
	a.open[info.ID] = info
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.open, info.ID)
		a.mu.Unlock()
	}
}
