// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Collector is the central collector's metrics (metrics_listen in
// collector.yaml). It implements the collector's Observer. Labels are the
// protocol's routes and HTTP status codes, never a host.
type Collector struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	records  prometheus.Counter
}

// NewCollector returns the collector's metrics, in a registry of their
// own (with the Go runtime's and the process's).
func NewCollector(b Build) *Collector {
	c := &Collector{reg: prometheus.NewRegistry()}
	c.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_collector_requests_total",
		Help: "Protocol requests answered, by route (add-entries, enroll) and HTTP status code.",
	}, []string{"route", "code"})
	c.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tollgate_collector_request_duration_seconds",
		Help:    "Time to answer a protocol request, by route.",
		Buckets: prometheus.ExponentialBuckets(0.5e-3, 2, 14), // 0.5ms .. 4s
	}, []string{"route"})
	c.records = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_collector_records_received_total",
		Help: "Records in add-entries requests answered 200 (a repeat of a stored range counts again).",
	})
	c.reg.MustRegister(c.requests, c.duration, c.records,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "tollgate_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	return c
}

// Answered observes one answered request.
func (c *Collector) Answered(route string, status int, took time.Duration, records int) {
	c.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	c.duration.WithLabelValues(route).Observe(took.Seconds())
	if status == http.StatusOK && records > 0 {
		c.records.Add(float64(records))
	}
}

// Handler serves the metrics in the Prometheus text format.
func (c *Collector) Handler() http.Handler {
	return promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{Registry: c.reg})
}

// Server returns the HTTP server of the metrics endpoint: /metrics only.
func (c *Collector) Server() *http.Server { return endpoint(c.Handler()) }
