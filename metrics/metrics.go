// SPDX-License-Identifier: Apache-2.0

// Package metrics owns the daemon's Prometheus metrics: what they are
// called, what moves them, and the scrape endpoint (metrics.listen).
//
// Most of them are read off the audit records the daemon appends, through
// Observe: a record is the one place where a session, a statement, its
// decision, a hold and what masking did are all known, so the metrics and
// the evidence cannot disagree. The audit log's own work (group commits,
// append latency, size) and the daemon's counters (connections accepted,
// origin lookup misses) come from the components that own them.
//
// Labels are bounded: target names and rule classes come from the config
// and from policy's fixed list of classes; never a statement, a user or a
// table.
package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate-dev/tollgate/audit"
)

// ErrNotLoopback is returned for a metrics.listen address that is not on
// loopback: the endpoint has no authentication, so it is only served to
// the host itself (a scraper elsewhere goes through a proxy with TLS).
var ErrNotLoopback = errors.New("metrics.listen must be a loopback address")

// maxOpenHolds bounds the approval requests whose start is remembered to
// measure how long their decision took; the daemon holds far fewer.
const maxOpenHolds = 4096

// Build names the running binary, for tollgate_build_info.
type Build struct {
	Version, Commit string
}

// Sources are the values the metrics read when scraped, from the
// components that own them. A nil func leaves its metric out.
type Sources struct {
	// LogSize is the number of durable records in the audit log.
	LogSize func() uint64
	// Pruned is how many records audit.retention removed from the front
	// of the log (seqs below it are no longer on the host).
	Pruned func() uint64
	// Accepted, LookupMisses and Refused are the daemon's connection
	// counters: accepted from a redirect, with no origin found in the
	// BPF map, refused.
	Accepted, LookupMisses, Refused func() uint64
	// RedirectAttached reports whether the eBPF redirect programs are
	// loaded and attached.
	RedirectAttached func() bool
	// HoldsPending is the number of statements held for approval now.
	HoldsPending func() int
	// RecordsPending is the number of records kept in memory because the
	// log could not take them (audit.Recorder), retried in order.
	RecordsPending func() int
	// Shipping is the shipper's state; nil when the log is not shipped.
	Shipping func() Shipping
	// Maps reports the eBPF maps' entries and capacities; nil or an error
	// leaves the map metrics out of a scrape.
	Maps func() ([]MapUsage, error)
}

// MapUsage is one eBPF map's entries and capacity.
type MapUsage struct {
	Name         string
	Entries, Max uint32
}

// mapCollector reads the maps' occupancy at scrape time.
type mapCollector struct {
	read           func() ([]MapUsage, error)
	entries, limit *prometheus.Desc
}

func (m *mapCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.entries
	ch <- m.limit
}

func (m *mapCollector) Collect(ch chan<- prometheus.Metric) {
	// A map that cannot be read (the programs not loaded yet) is left out
	// of this scrape rather than failing the whole scrape.
	us, _ := m.read()
	for _, u := range us {
		ch <- prometheus.MustNewConstMetric(m.entries, prometheus.GaugeValue, float64(u.Entries), u.Name)
		ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(u.Max), u.Name)
	}
}

// Shipping is what the shipper reports, for the shipping metrics.
type Shipping struct {
	Shipped, Cosigned uint64  // records the collector holds; size it cosigned
	LagRecords        uint64  // local records it does not hold yet
	LagSeconds        float64 // age of the oldest of those
	Halted            bool    // the collector proved misbehavior
}

// Daemon is the daemon's metrics. Its methods are safe for concurrent
// use.
type Daemon struct {
	reg *prometheus.Registry

	sessions    *prometheus.CounterVec
	statements  *prometheus.CounterVec
	results     *prometheus.CounterVec
	masked      *prometheus.CounterVec
	holds       *prometheus.CounterVec
	approval    *prometheus.HistogramVec
	appendDur   prometheus.Histogram
	flushDur    prometheus.Histogram
	commitSize  prometheus.Histogram
	recordsSeen *prometheus.CounterVec

	mu        sync.Mutex
	holdStart map[string]time.Time // approval id -> request time
}

// NewDaemon returns the daemon's metrics, registered in a registry of
// their own (with the Go runtime's and the process's).
func NewDaemon(b Build, src Sources) *Daemon {
	d := &Daemon{reg: prometheus.NewRegistry(), holdStart: map[string]time.Time{}}
	d.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_sessions_total",
		Help: "Sessions started through tollgate, by target, protocol and how the identity was established (process, oidc, none).",
	}, []string{"target", "protocol", "identity_method"})
	d.statements = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_statements_total",
		Help: "Statements (and SSH requests) decided, by target, decision (allow, deny, review, mask) and class (the first of the statement's classes; exec, shell, sftp… for SSH).",
	}, []string{"target", "decision", "class"})
	d.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_statement_results_total",
		Help: "Statement results, by target and outcome (ok, error, skipped).",
	}, []string{"target", "outcome"})
	d.masked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_masked_values_total",
		Help: "Values masked in results, by target and by what masked them: a detector's or pattern's name, or column_rule.",
	}, []string{"target", "detector"})
	d.holds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_holds_total",
		Help: "Statements held for approval, by target and outcome (requested, approved, denied, timed_out, cancelled).",
	}, []string{"target", "outcome"})
	d.approval = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tollgate_approval_duration_seconds",
		Help:    "Time from a hold's request to its final decision, by outcome.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600},
	}, []string{"outcome"})
	d.appendDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tollgate_audit_append_duration_seconds",
		Help:    "Time a record the traffic waits for takes to become durable in the audit log.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14), // 50µs .. 0.4s
	})
	d.flushDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tollgate_audit_journal_flush_duration_seconds",
		Help:    "Time one group commit takes to write and fsync the audit journal.",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14), // 25µs .. 0.2s
	})
	d.commitSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tollgate_audit_group_commit_records",
		Help:    "Records made durable by one group commit of the audit journal.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192
	})
	d.recordsSeen = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_audit_records_total",
		Help: "Records appended to the audit log, by kind.",
	}, []string{"kind"})
	d.reg.MustRegister(d.sessions, d.statements, d.results, d.masked, d.holds, d.approval,
		d.appendDur, d.flushDur, d.commitSize, d.recordsSeen,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "tollgate_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	if src.LogSize != nil {
		d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_audit_log_records",
			Help: "Durable records in the host's audit log (its Merkle tree size).",
		}, func() float64 { return float64(src.LogSize()) }))
	}
	if src.Pruned != nil {
		d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_audit_pruned_records",
			Help: "Records audit.retention removed from the front of the host's log (only ones the collector cosigned); their seqs are below this.",
		}, func() float64 { return float64(src.Pruned()) }))
	}
	counter := func(name, help string, f func() uint64) {
		if f != nil {
			d.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
				func() float64 { return float64(f()) }))
		}
	}
	counter("tollgate_connections_accepted_total", "Connections redirected to tollgate and accepted.", src.Accepted)
	counter("tollgate_origin_lookup_misses_total", "Accepted connections whose original destination was not in the BPF map (closed: fail closed).", src.LookupMisses)
	counter("tollgate_connections_refused_total", "Connections refused (no target, fail closed, log unwritable).", src.Refused)
	if src.RedirectAttached != nil {
		d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_redirect_attached",
			Help: "1 when the eBPF redirect programs are loaded and attached, else 0.",
		}, func() float64 {
			if src.RedirectAttached() {
				return 1
			}
			return 0
		}))
	}
	if src.Maps != nil {
		d.reg.MustRegister(&mapCollector{read: src.Maps,
			entries: prometheus.NewDesc("tollgate_bpf_map_entries",
				"Entries in an eBPF map of the redirect programs now (connection state maps evict the oldest when full; configuration maps refuse writes).",
				[]string{"map"}, nil),
			limit: prometheus.NewDesc("tollgate_bpf_map_max_entries", "Capacity of an eBPF map of the redirect programs.", []string{"map"}, nil),
		})
	}
	if src.HoldsPending != nil {
		d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_holds_pending",
			Help: "Statements held for approval now.",
		}, func() float64 { return float64(src.HoldsPending()) }))
	}
	if src.RecordsPending != nil {
		d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_audit_records_pending",
			Help: "Audit records kept in memory because the log could not take them (disk full, unwritable), retried in order.",
		}, func() float64 { return float64(src.RecordsPending()) }))
	}
	if f := src.Shipping; f != nil {
		gauge := func(name, help string, v func(Shipping) float64) {
			d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
				func() float64 { return v(f()) }))
		}
		gauge("tollgate_ship_shipped_records", "Records of this host's log the collector holds, as last heard.",
			func(s Shipping) float64 { return float64(s.Shipped) })
		gauge("tollgate_ship_cosigned_records", "Size of the newest checkpoint the collector cosigned.",
			func(s Shipping) float64 { return float64(s.Cosigned) })
		gauge("tollgate_ship_lag_records", "Local records the collector does not hold yet.",
			func(s Shipping) float64 { return float64(s.LagRecords) })
		gauge("tollgate_ship_lag_seconds", "Age of the oldest record the collector does not hold yet (0 when caught up).",
			func(s Shipping) float64 { return s.LagSeconds })
		gauge("tollgate_ship_halted", "1 when the collector proved misbehavior and shipping stopped, else 0.",
			func(s Shipping) float64 {
				if s.Halted {
					return 1
				}
				return 0
			})
	}
	return d
}

// Registry is where the metrics are registered, for tests and for
// serving.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Handler serves the metrics in the Prometheus text format.
func (d *Daemon) Handler() http.Handler {
	return promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg})
}

// Durable observes records once durable in the audit log, and how long
// their appender waited (negative: nothing waited): it implements
// audit.Observer.
func (d *Daemon) Durable(rs []*audit.Record, waited time.Duration) {
	if waited >= 0 {
		d.appendDur.Observe(waited.Seconds())
	}
	for _, r := range rs {
		d.Observe(r)
	}
}

// Committed observes one group commit of the audit journal: it
// implements audit.Observer. With audit.sync batch a flush comes apart
// from the writes (records 0): it counts as a flush, not a group.
func (d *Daemon) Committed(records int, took time.Duration) {
	if records > 0 {
		d.commitSize.Observe(float64(records))
	}
	d.flushDur.Observe(took.Seconds())
}

// Observe moves the metrics a record stands for; Durable calls it once
// per record.
func (d *Daemon) Observe(r *audit.Record) {
	d.recordsSeen.WithLabelValues(string(r.Kind)).Inc()
	switch r.Kind {
	case audit.KindSessionStart:
		if r.Detail[audit.DetailRequest] == "cancel" {
			return // a cancel request, not a session
		}
		method := "none"
		if r.Identity != nil && r.Identity.Method != "" {
			method = r.Identity.Method
		}
		protocol := r.Detail[audit.DetailProtocol]
		if protocol == "" {
			protocol = "tcp"
		}
		d.sessions.WithLabelValues(r.Target, protocol, method).Inc()
	case audit.KindStatement, audit.KindChannelRequest:
		// An SSH request with a decision (exec, shell, subsystem,
		// forwarding) is the SSH target's statement.
		if r.Kind == audit.KindChannelRequest && r.Decision == nil {
			return
		}
		decision, class := "none", "none"
		if r.Decision != nil && r.Decision.Action != "" {
			decision = r.Decision.Action
		}
		if r.Statement != nil && len(r.Statement.Classes) > 0 {
			class = r.Statement.Classes[0]
		}
		d.statements.WithLabelValues(r.Target, decision, class).Inc()
	case audit.KindResult:
		outcome := "ok"
		switch {
		case r.Detail[audit.DetailSkipped] == "true":
			outcome = "skipped"
		case r.Detail[audit.DetailSQLState] != "":
			outcome = "error"
		}
		d.results.WithLabelValues(r.Target, outcome).Inc()
		d.observeMasked(r)
	case audit.KindApprovalRequest:
		d.holds.WithLabelValues(r.Target, "requested").Inc()
		if id := r.Detail[audit.DetailApproval]; id != "" {
			d.mu.Lock()
			if len(d.holdStart) < maxOpenHolds {
				d.holdStart[id] = r.Time
			}
			d.mu.Unlock()
		}
	case audit.KindApprovalDecision:
		if r.Detail[audit.DetailFinal] == "false" {
			return // a vote, not the decision
		}
		outcome := "denied"
		switch {
		case r.Detail[audit.DetailTimedOut] == "true":
			outcome = "timed_out"
		case r.Detail[audit.DetailCancelled] != "":
			outcome = "cancelled"
		case r.Decision != nil && r.Decision.Action == "allow":
			outcome = "approved"
		}
		d.holds.WithLabelValues(r.Target, outcome).Inc()
		id := r.Detail[audit.DetailApproval]
		d.mu.Lock()
		start, ok := d.holdStart[id]
		delete(d.holdStart, id)
		d.mu.Unlock()
		if ok && !r.Time.Before(start) {
			d.approval.WithLabelValues(outcome).Observe(r.Time.Sub(start).Seconds())
		}
	}
}

// maskedColumn is what a result record says masking did to one column
// (policy/mask's ColumnCount, as the record carries it).
type maskedColumn struct {
	Masked int64            `json:"masked"`
	Nulled int64            `json:"nulled"`
	Found  map[string]int64 `json:"found"`
}

func (d *Daemon) observeMasked(r *audit.Record) {
	js := r.Detail[audit.DetailMaskedColumns]
	if js == "" {
		return
	}
	var cols []maskedColumn
	if json.Unmarshal([]byte(js), &cols) != nil {
		return
	}
	for _, c := range cols {
		if n := c.Masked + c.Nulled; n > 0 {
			d.masked.WithLabelValues(r.Target, "column_rule").Add(float64(n))
		}
		for det, n := range c.Found {
			d.masked.WithLabelValues(r.Target, det).Add(float64(n))
		}
	}
}

// Listener opens the metrics endpoint's listener on addr, which must be
// a loopback address with a port.
func Listener(addr string) (net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %q: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("metrics.listen %q: %w", addr, ErrNotLoopback)
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	return ln, nil
}

// Server returns the HTTP server of the metrics endpoint: /metrics, and
// nothing else.
func (d *Daemon) Server() *http.Server { return endpoint(d.Handler()) }

func endpoint(h http.Handler) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
}
