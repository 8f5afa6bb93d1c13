// SPDX-License-Identifier: Apache-2.0

// Package agent is the tollgate daemon: it loads the config, opens the audit
// log, attaches the redirect programs, runs one proxy listener per target,
// hands accepted connections to the target's protocol handler, serves the
// API socket, and reloads on SIGHUP.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate-dev/tollgate/agent/postgres"
	sshproxy "github.com/tollgate-dev/tollgate/agent/ssh"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/ship"
	"github.com/tollgate-dev/tollgate/metrics"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/mask"
	"github.com/tollgate-dev/tollgate/redirect"
)

// LogFile is the name of the audit log inside state_dir.
const LogFile = "audit.db"

// GrantsFile is the name of the just-in-time grants file inside state_dir.
const GrantsFile = "grants.json"

// maxHolds bounds the statements held for approval at once, daemon-wide;
// a review beyond it is refused rather than queued without bound.
const maxHolds = 1024

// Options configure Run.
type Options struct {
	// ConfigPath is the YAML config file; it is read again on SIGHUP.
	ConfigPath string
	// Logger receives the daemon's operational log.
	Logger *slog.Logger
	// Version is reported in agent.start records and status; Commit with
	// it in tollgate_build_info.
	Version, Commit string
	// Signals, when set, replaces the process signals (tests).
	Signals <-chan os.Signal
}

// Agent is a running daemon.
type Agent struct {
	log      *slog.Logger
	opts     Options
	started  time.Time
	cgroup2  string
	mark     uint32
	alog     *audit.Log
	shipper  *ship.Shipper // nil unless audit.ship.url is set
	hostKey  *audit.HostKey
	redir    *redirect.Redirector
	pinPath  string
	hostID   string
	ctx      context.Context // cancelled at shutdown
	sessions sync.WaitGroup

	mu        sync.Mutex
	cfg       policy.Config
	cfgHash   string
	targets   map[string]*targetState // by name
	byID      map[uint32]*targetState
	workloads []workloadState
	locals    []netip.Prefix // the host's own address prefixes, as last read
	open      map[string]*sessionInfo
	maskers   map[string]*mask.Masker // by target name; guarded by mu

	pg  *postgres.Server // the PostgreSQL handler, shared by postgres targets
	ssh *sshproxy.Server // the SSH handler, shared by ssh targets
	pol policyState      // the rules in force; swapped on reload
	// approvals are the statements held for review, decided through the
	// API socket; grants the just-in-time grants, kept in state_dir.
	approvals *policy.Approvals
	grants    *policy.Grants
	oidc      *postgres.OIDCVerifier // from cfg.OIDC; replaced on reload; guarded by mu

	// rec is how the protocol handlers and the daemon's own events reach
	// alog; it keeps what the log cannot take for now and retries it.
	rec *audit.Recorder

	// metrics are read off the audit log's records and the counters
	// below; attached is set once the redirect programs are attached.
	metrics  *metrics.Daemon
	attached atomic.Bool

	// counters for status
	accepted   atomic.Uint64
	lookupMiss atomic.Uint64
	refused    atomic.Uint64
}

// targetState is a configured target with its listeners and resolved
// destinations.
type targetState struct {
	cfg      policy.Target
	tls      *tls.Config // offered to postgres clients; nil: none
	id       uint32
	port     uint16
	ln4, ln6 *net.TCPListener
	prefixes []netip.Prefix // resolved destinations, each with cfg port
	ports    []uint16
	// sockets are the protected unix socket paths; uln listens on usock,
	// the daemon's socket they are rewritten to.
	sockets      []string
	uln          *net.UnixListener
	usock        string
	ulnAccepting bool
	// localDial is, per port that is a local service (see local.go), the
	// address the proxy dials for a connect matched by port alone.
	localDial  map[uint16]netip.AddrPort
	resolveErr string
}

// Run starts the daemon and blocks until ctx is cancelled or SIGTERM/SIGINT
// arrives; it then stops cleanly. Pinned programs stay attached when Run
// returns, so interception fails closed until the daemon is back.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := policy.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	a := &Agent{
		log:     opts.Logger,
		opts:    opts,
		started: time.Now(),
		mark:    redirect.DefaultMark,
		cfg:     cfg,
		cfgHash: cfg.Hash(),
		targets: map[string]*targetState{},
		byID:    map[uint32]*targetState{},
		open:    map[string]*sessionInfo{},
		pinPath: cfg.BPFPinPath,
	}
	if err := checkSupported(cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if a.maskers, err = buildMaskers(cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if a.cgroup2, err = redirect.FindCgroup2(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if a.hostID, err = hostID(cfg.HostID); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	wls, err := resolveWorkloads(a.cgroup2, cfg.Workloads, true)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	a.workloads = wls

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if a.hostKey, err = audit.LoadOrCreateHostKey(cfg.StateDir, a.hostID); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	// The sources are read when scraped, which starts after the log,
	// the approvals and the redirect exist.
	a.metrics = metrics.NewDaemon(metrics.Build{Version: opts.Version, Commit: opts.Commit}, metrics.Sources{
		LogSize:          func() uint64 { return a.alog.Size() },
		Pruned:           func() uint64 { return a.alog.Pruned().Below },
		Accepted:         a.accepted.Load,
		LookupMisses:     a.lookupMiss.Load,
		Refused:          a.refused.Load,
		RedirectAttached: a.attached.Load,
		HoldsPending:     func() int { return len(a.approvals.List()) },
		RecordsPending:   func() int { return a.rec.Pending() }, // served only once the log is open
		Shipping:         a.shippingMetrics(cfg),
		Maps:             a.mapUsage,
	})
	a.alog, err = audit.Open(filepath.Join(cfg.StateDir, LogFile), audit.Options{HostID: a.hostID, Logger: a.log,
		Key: a.hostKey, CheckpointInterval: time.Duration(cfg.Audit.CheckpointInterval), Observer: a.metrics,
		FlushInterval: flushInterval(cfg.Audit)})
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	a.rec = audit.NewRecorder(a.alog, a.log)
	if iv := flushInterval(cfg.Audit); iv > 0 {
		a.log.Info("audit sync: batch: records are written before forwarding and flushed within the interval; a power loss can lose that window",
			"flush_interval", iv)
	}
	defer func() {
		if cerr := a.alog.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close audit log: %w", cerr)
		}
	}()

	if u := cfg.Audit.Ship.URL; u != "" {
		a.shipper, err = ship.New(ship.Options{URL: u, CA: cfg.Audit.Ship.CA, TokenFile: cfg.Audit.Ship.TokenFile,
			Interval: time.Duration(cfg.Audit.Ship.Interval), StateDir: cfg.StateDir, HostID: a.hostID,
			Key: a.hostKey, Log: a.alog, Logger: a.log})
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		defer a.shipper.Close()
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.ctx = runCtx
	a.pol.set(&cfg, a.cfgHash)
	a.approvals = policy.NewApprovals(maxHolds)
	if a.grants, err = policy.OpenGrants(filepath.Join(cfg.StateDir, GrantsFile)); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	marks, err := openExpiryMarks(filepath.Join(cfg.StateDir, GrantsExpiredFile))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	a.pg = postgres.NewServer(postgres.Options{Logger: a.log, Recorder: a.rec, Dial: a.dialUpstream,
		Policy: &a.pol, Approvals: a.approvals, Grants: a.grants})
	a.oidc = a.newOIDCVerifier(cfg)
	ca, err := sshproxy.LoadCA(cfg.StateDir)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if a.ssh, err = sshproxy.NewServer(sshproxy.Options{Logger: a.log, Recorder: a.rec, Dial: a.dialUpstream,
		Policy: &a.pol, Approvals: a.approvals, Grants: a.grants, CA: ca}); err != nil {
		return fmt.Errorf("start: %w", err)
	}

	if err := a.record(&audit.Record{Kind: audit.KindAgentStart, Detail: map[string]string{
		"version": opts.Version, "pid": strconv.Itoa(os.Getpid()), audit.DetailConfig: opts.ConfigPath,
	}}); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := a.record(&audit.Record{Kind: audit.KindPolicyLoad, Detail: policyLoadDetail(&cfg, opts.ConfigPath, "loaded")}); err != nil {
		return fmt.Errorf("start: %w", err)
	}

	// Listeners come first, so that no connect is ever redirected to a
	// port nobody listens on yet.
	if err := a.applyTargets(cfg); err != nil {
		a.closeListeners()
		return fmt.Errorf("start: %w", err)
	}
	defer a.closeListeners()

	ip, _ := netip.ParseAddr(cfg.ListenAddress)
	a.redir, err = redirect.Load(redirect.Options{PinPath: cfg.BPFPinPath, CgroupRoot: a.cgroup2, Mark: a.mark, ListenIP: ip, Logger: a.log})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer a.redir.Close()
	if a.locals, err = redirect.LocalPrefixes(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := a.syncMaps(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	a.attached.Store(true)
	defer a.attached.Store(false)

	if cfg.Metrics.Listen != "" {
		stop, err := a.serveMetrics(cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		defer stop()
	}

	api, err := a.serveAPI(cfg.APISocket)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer api.Close()

	a.mu.Lock()
	for _, t := range a.targets {
		a.startAccepting(t)
	}
	a.mu.Unlock()

	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); a.refreshLoop(runCtx) }()
	bg.Add(1)
	go func() { defer bg.Done(); a.rec.Run(runCtx) }()
	bg.Add(1)
	go func() { defer bg.Done(); a.heartbeatLoop(runCtx) }()
	bg.Add(1)
	go func() { defer bg.Done(); a.grantExpiryLoop(runCtx, marks) }()
	if a.shipper != nil {
		bg.Add(1)
		go func() { defer bg.Done(); _ = a.shipper.Run(runCtx) }()
		bg.Add(1)
		go func() { defer bg.Done(); a.retentionLoop(runCtx) }()
	}
	a.log.Info("audit retention", "retention", RetentionText(cfg))

	a.log.Info("tollgate running", "targets", len(cfg.Targets), "workloads", len(cfg.Workloads),
		"api", cfg.APISocket, "pin", cfg.BPFPinPath, "log", filepath.Join(cfg.StateDir, LogFile))
	_ = sdNotify("READY=1")

	sigs := opts.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(ch)
		sigs = ch
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case s := <-sigs:
			if s == syscall.SIGHUP {
				_ = sdNotify("RELOADING=1")
				if err := a.reload(); err != nil {
					a.log.Error("reload rejected, previous config stays in force", "error", err)
				}
				_ = sdNotify("READY=1")
				continue
			}
			a.log.Info("stopping", "signal", s.String())
			break loop
		}
	}
	_ = sdNotify("STOPPING=1")
	a.closeListeners()
	// Sessions in flight get a short grace period, then are cut; each
	// still writes its session.end record.
	done := make(chan struct{})
	go func() { a.sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cancel()
		<-done
	}
	cancel()
	bg.Wait()
	a.rec.Drop()
	if err := a.record(&audit.Record{Kind: audit.KindAgentStop, Detail: map[string]string{audit.DetailReason: "signal"}}); err != nil {
		a.log.Error("recording agent stop", "error", err)
	}
	return nil
}

// record appends a record and returns once it is durable.
func (a *Agent) record(r *audit.Record) error {
	_, err := a.alog.Append(context.Background(), r)
	return err
}

// hostID returns the configured host id or /etc/machine-id.
func hostID(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return "", fmt.Errorf("host id: set host_id in the config or provide /etc/machine-id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", errors.New("host id: /etc/machine-id is empty; set host_id in the config")
	}
	return id, nil
}

// applyTargets makes the listeners match cfg's targets: new targets get
// listeners, removed ones are closed, kept ones keep their sockets.
// Hostname destinations are resolved here and by the refresh loop.
func (a *Agent) applyTargets(cfg policy.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	want := map[string]bool{}
	for _, tc := range cfg.Targets {
		want[tc.Name] = true
		// Checked by checkSupported; a file changed since then fails here.
		tlsConf, err := loadClientTLS(tc.TLS)
		if err != nil {
			return fmt.Errorf("target %q: %w", tc.Name, err)
		}
		old, ok := a.targets[tc.Name]
		if ok && old.cfg.ListenPort == tc.ListenPort && old.cfg.Protocol == tc.Protocol {
			old.cfg, old.tls = tc, tlsConf
			a.resolveTarget(old)
			if err := a.syncUnixListener(old, unixSocketDir(cfg)); err != nil {
				return fmt.Errorf("target %q: %w", tc.Name, err)
			}
			if a.redir != nil {
				a.startAcceptingUnix(old)
			}
			continue
		}
		ts := &targetState{cfg: tc, tls: tlsConf, id: stableID("target", tc.Name)}
		if err := a.openListeners(cfg.ListenAddress, ts); err != nil {
			return fmt.Errorf("target %q: %w", tc.Name, err)
		}
		a.resolveTarget(ts)
		if err := a.syncUnixListener(ts, unixSocketDir(cfg)); err != nil {
			a.closeTarget(ts)
			return fmt.Errorf("target %q: %w", tc.Name, err)
		}
		if ok {
			a.closeTarget(old)
		}
		a.targets[tc.Name] = ts
		a.byID[ts.id] = ts
		if a.redir != nil { // at start, accepting begins once the programs are loaded
			a.startAccepting(ts)
		}
	}
	for name, ts := range a.targets {
		if !want[name] {
			a.closeTarget(ts)
			delete(a.targets, name)
			delete(a.byID, ts.id)
		}
	}
	return nil
}

func (a *Agent) openListeners(addr string, ts *targetState) error {
	port := uint16(ts.cfg.ListenPort)
	var err error
	// The IPv6 listener must share the IPv4 listener's port, because the
	// programs hold one proxy port per target. Retry a few times when the
	// kernel-chosen port is already taken on ::1.
	for attempt := 0; attempt < 8; attempt++ {
		ts.ln4, err = listenMarked(context.Background(), a.mark, net.JoinHostPort(addr, strconv.Itoa(int(port))))
		if err != nil {
			return fmt.Errorf("listen on %s:%d: %w", addr, port, err)
		}
		ts.port = uint16(ts.ln4.Addr().(*net.TCPAddr).Port)
		ts.ln6, err = listenMarked(context.Background(), a.mark, net.JoinHostPort("::1", strconv.Itoa(int(ts.port))))
		if err == nil {
			return nil
		}
		if !ipv6Loopback() {
			// No IPv6 on this host: IPv6 targets cannot be reached
			// anyway, and v6 connects to them are refused.
			a.log.Warn("no IPv6 loopback, IPv6 clients of this target will be refused", "target", ts.cfg.Name)
			ts.ln6 = nil
			return nil
		}
		ts.ln4.Close()
		if port != 0 {
			return fmt.Errorf("listen on [::1]:%d: %w", port, err)
		}
	}
	return fmt.Errorf("listen on [::1]: %w", err)
}

func ipv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// resolveTarget fills the target's destinations, resolving hostnames.
func (a *Agent) resolveTarget(ts *targetState) {
	var prefixes []netip.Prefix
	var ports []uint16
	var sockets []string
	var problems []string
	matches, err := ts.cfg.Matches()
	if err != nil {
		problems = append(problems, err.Error())
	}
	for _, m := range matches {
		if m.Socket != "" {
			sockets = append(sockets, m.Socket)
			continue
		}
		if m.Host == "" {
			prefixes = append(prefixes, m.Prefix)
			ports = append(ports, m.Port)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", m.Host)
		cancel()
		if err != nil {
			problems = append(problems, fmt.Sprintf("resolve %s: %v", m.Host, err))
			// Keep the previous addresses rather than drop protection
			// because the resolver hiccupped.
			for i, p := range ts.prefixes {
				if i < len(ts.ports) && ts.ports[i] == m.Port {
					prefixes = append(prefixes, p)
					ports = append(ports, m.Port)
				}
			}
			continue
		}
		for _, ad := range addrs {
			ad = ad.Unmap()
			prefixes = append(prefixes, netip.PrefixFrom(ad, ad.BitLen()))
			ports = append(ports, m.Port)
		}
	}
	ts.prefixes, ts.ports, ts.sockets = prefixes, ports, sockets
	ts.resolveErr = strings.Join(problems, "; ")
}

func (a *Agent) closeTarget(ts *targetState) {
	if ts.ln4 != nil {
		ts.ln4.Close()
	}
	if ts.ln6 != nil {
		ts.ln6.Close()
	}
	a.closeUnixListener(ts)
}

func (a *Agent) closeListeners() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ts := range a.targets {
		a.closeTarget(ts)
	}
}

// syncMaps writes targets, listeners and workloads into the kernel maps.
func (a *Agent) syncMaps() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var targets []redirect.Target
	var ports []uint16
	for _, ts := range a.targets {
		ports = append(ports, ts.port)
		for i, p := range ts.prefixes {
			targets = append(targets, redirect.Target{ID: ts.id, Prefix: p, Port: ts.ports[i], ListenPort: ts.port})
		}
		ts.localDial = localDials(ts, a.locals)
	}
	local, dup := a.localTargets()
	if len(dup) > 0 {
		a.log.Warn("several targets are local services on the same port; the first by name serves local destinations they do not name", "ports", dup)
	}
	if err := a.redir.SetListeners(ports); err != nil {
		return err
	}
	// Local addresses before the targets that depend on them, so a new
	// local target is matched on every local address from its first entry.
	if err := a.redir.SetLocalNets(a.locals); err != nil {
		return err
	}
	if err := a.redir.SetTargets(targets); err != nil {
		return err
	}
	if err := a.redir.SetLocalTargets(local); err != nil {
		return err
	}
	if err := a.redir.SetUnixTargets(a.unixTargets()); err != nil {
		return err
	}
	cg, uids := workloadMaps(a.workloads)
	return a.redir.SetWorkloads(cg, uids, unitPaths(a.workloads))
}

// refreshLoop re-resolves unit cgroups (a restarted unit gets a new cgroup)
// and re-reads the host's own addresses every second, and target hostnames
// every 30 seconds.
func (a *Agent) refreshLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n++
		a.mu.Lock()
		cfg := a.cfg
		a.mu.Unlock()
		wls, _ := resolveWorkloads(a.cgroup2, cfg.Workloads, false)
		locals, lerr := redirect.LocalPrefixes()
		if lerr != nil {
			a.log.Warn("reading the host's addresses", "error", lerr)
		}
		a.mu.Lock()
		changed := !sameWorkloads(a.workloads, wls)
		a.workloads = wls
		if lerr == nil && !slices.Equal(a.locals, locals) {
			a.locals, changed = locals, true
		}
		if n%30 == 0 {
			for _, ts := range a.targets {
				a.resolveTarget(ts)
			}
			changed = true
		}
		a.mu.Unlock()
		if changed {
			if err := a.syncMaps(); err != nil {
				a.log.Error("updating redirect maps", "error", err)
			}
		}
	}
}

func sameWorkloads(a, b []workloadState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].CgroupID != b[i].CgroupID || a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

// reload re-reads the config. An invalid config is rejected and the old
// one stays in force; both outcomes are recorded.
func (a *Agent) reload() error {
	cfg, err := policy.Load(a.opts.ConfigPath)
	if err == nil {
		err = checkSupported(cfg)
	}
	if err == nil {
		err = a.checkReload(cfg)
	}
	var maskers map[string]*mask.Masker
	if err == nil {
		maskers, err = buildMaskers(cfg)
	}
	var wls []workloadState
	if err == nil {
		wls, err = resolveWorkloads(a.cgroup2, cfg.Workloads, true)
	}
	if err == nil {
		err = a.applyTargets(cfg)
	}
	if err != nil {
		// The old policy stays in force: the record names its hash, and
		// says why the new one was refused.
		a.mu.Lock()
		old := a.cfg
		a.mu.Unlock()
		_ = a.record(&audit.Record{Kind: audit.KindPolicyLoad, Error: err.Error(), Detail: policyLoadDetail(&old, a.opts.ConfigPath, "rejected")})
		return err
	}
	a.mu.Lock()
	a.cfg, a.cfgHash, a.workloads, a.maskers = cfg, cfg.Hash(), wls, maskers
	a.pol.set(&cfg, a.cfgHash)
	a.oidc = a.newOIDCVerifier(cfg)
	a.mu.Unlock()
	if err := a.syncMaps(); err != nil {
		return err
	}
	a.log.Info("config reloaded", "hash", cfg.Hash())
	return a.record(&audit.Record{Kind: audit.KindPolicyLoad, Detail: policyLoadDetail(&cfg, a.opts.ConfigPath, "loaded")})
}

// policyLoadDetail describes the policy in force for a policy.load record:
// "hash" covers the config and its policy_file together; each file's own
// hash is there too, so either can be checked with sha256sum.
func policyLoadDetail(cfg *policy.Config, source, result string) map[string]string {
	d := map[string]string{audit.DetailHash: cfg.Hash(), audit.DetailSource: source, audit.DetailResult: result}
	ch, ph := cfg.FileHashes()
	d[audit.DetailConfigHash] = ch
	if cfg.PolicyFile != "" {
		d[audit.DetailPolicyFile] = cfg.PolicyFile
		d[audit.DetailPolicyFileHash] = ph
	}
	return d
}

// ErrUnsupported means the config asks for something this build cannot
// enforce yet. Starting anyway would let traffic through unenforced.
var ErrUnsupported = errors.New("not supported by this version")

// checkSupported refuses configs whose targets this build cannot enforce,
// and postgres targets whose upstream password file is unsafe or
// unreadable (checked again at every connect).
func checkSupported(cfg policy.Config) error {
	var errs []error
	for i, t := range cfg.Targets {
		switch t.Protocol {
		case policy.ProtocolTCP:
		case policy.ProtocolPostgres:
			if err := postgres.CheckPasswordFile(t.Upstream.PasswordFile); err != nil {
				errs = append(errs, fmt.Errorf("targets[%d] %q: upstream.password_file: %w", i, t.Name, err))
			}
			if _, err := loadClientTLS(t.TLS); err != nil {
				errs = append(errs, fmt.Errorf("targets[%d] %q: %w", i, t.Name, err))
			}
		case policy.ProtocolSSH:
			if t.Upstream.KeyFile != "" {
				if err := sshproxy.CheckKeyFile(t.Upstream.KeyFile); err != nil {
					errs = append(errs, fmt.Errorf("targets[%d] %q: upstream.key_file: %w", i, t.Name, err))
				}
			}
			if _, err := os.Stat(t.Upstream.KnownHosts); err != nil {
				errs = append(errs, fmt.Errorf("targets[%d] %q: upstream.known_hosts: %w", i, t.Name, err))
			}
		default:
			errs = append(errs, fmt.Errorf("targets[%d] %q: protocol %s: %w", i, t.Name, t.Protocol, ErrUnsupported))
		}
	}
	return errors.Join(errs...)
}

// checkReload refuses changes that need a restart.
func (a *Agent) checkReload(cfg policy.Config) error {
	a.mu.Lock()
	old := a.cfg
	a.mu.Unlock()
	var errs []error
	if cfg.StateDir != old.StateDir {
		errs = append(errs, errors.New("state_dir cannot change without a restart"))
	}
	if cfg.APISocket != old.APISocket {
		errs = append(errs, errors.New("api_socket cannot change without a restart"))
	}
	if cfg.BPFPinPath != old.BPFPinPath {
		errs = append(errs, errors.New("bpf_pin_path cannot change without a restart"))
	}
	if cfg.ListenAddress != old.ListenAddress {
		errs = append(errs, errors.New("listen_address cannot change without a restart"))
	}
	if cfg.HostID != old.HostID {
		errs = append(errs, errors.New("host_id cannot change without a restart"))
	}
	if cfg.Metrics.Listen != old.Metrics.Listen {
		errs = append(errs, errors.New("metrics.listen cannot change without a restart"))
	}
	if cfg.Log != old.Log {
		errs = append(errs, errors.New("log cannot change without a restart"))
	}
	if flushInterval(cfg.Audit) != flushInterval(old.Audit) {
		errs = append(errs, errors.New("audit.sync and audit.flush_interval cannot change without a restart"))
	}
	return errors.Join(errs...)
}

// flushInterval is the audit log's Options.FlushInterval for the config:
// zero for sync: always, the flush interval for sync: batch.
func flushInterval(a policy.Audit) time.Duration {
	if a.Sync == policy.SyncBatch {
		return time.Duration(a.FlushInterval)
	}
	return 0
}

// serveMetrics serves /metrics on addr (loopback) until stop is called.
func (a *Agent) serveMetrics(addr string) (stop func(), err error) {
	ln, err := metrics.Listener(addr)
	if err != nil {
		return nil, err
	}
	srv := a.metrics.Server()
	srv.ErrorLog = slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics endpoint stopped", "listen", addr, "error", err)
		}
	}()
	a.log.Info("serving metrics", "listen", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// shippingMetrics reads the shipper for the metrics; nil when the log is
// not shipped. The shipper exists before the endpoint serves.
func (a *Agent) shippingMetrics(cfg policy.Config) func() metrics.Shipping {
	if cfg.Audit.Ship.URL == "" {
		return nil
	}
	return func() metrics.Shipping {
		st := a.shipper.Status()
		return metrics.Shipping{Shipped: st.Shipped, Cosigned: st.Cosigned, LagRecords: st.LagRecords,
			LagSeconds: st.LagSeconds, Halted: st.Halted}
	}
}

// mapUsage is the redirect maps' occupancy, for the metrics.
func (a *Agent) mapUsage() ([]metrics.MapUsage, error) {
	a.mu.Lock()
	r := a.redir
	a.mu.Unlock()
	if r == nil {
		return nil, errors.New("redirect programs not loaded yet")
	}
	us, err := r.Occupancy()
	out := make([]metrics.MapUsage, len(us))
	for i, u := range us {
		out[i] = metrics.MapUsage{Name: u.Name, Entries: u.Entries, Max: u.Max}
	}
	return out, err
}
