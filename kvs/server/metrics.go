package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics holds the server's Prometheus collectors, registered on a registry
// of its own (no global state).
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    map[string]prometheus.Observer // by operation, resolved once
	refused     *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	conns       prometheus.Gauge

	watchers     prometheus.Gauge
	watchEvents  prometheus.Counter
	watchDropped *prometheus.CounterVec
}

var metricOps = []string{"get", "put", "delete", "delete_prefix", "list", "txn", "snapshot", "watch", "lease", "health", "metrics", "other"}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvs_requests_total", Help: "HTTP requests by operation and status code.",
		}, []string{"op", "code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvs_tls_handshakes_refused_total", Help: "Refused TLS handshakes by reason.",
		}, []string{"reason"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvs_store_errors_total", Help: "Store operations that failed for a reason other than not found or a precondition.",
		}, []string{"op"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvs_open_connections", Help: "Connections currently open.",
		}),
		duration: map[string]prometheus.Observer{},
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvs_watchers", Help: "Watches (server-sent event streams) currently open.",
		}),
		watchEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvs_watch_events_total", Help: "Changes sent to watchers.",
		}),
		watchDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvs_watch_dropped_total", Help: "Watches the server ended because the client did not read: its buffer was full (slow_reader) or a write timed out (write_timeout).",
		}, []string{"reason"}),
	}
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kvs_request_duration_seconds",
		Help:    "Request latency by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"op"})
	for _, op := range metricOps {
		m.duration[op] = hist.WithLabelValues(op)
	}
	m.watchDropped.WithLabelValues("slow_reader")
	m.watchDropped.WithLabelValues("write_timeout")
	m.reg.MustRegister(m.requests, hist, m.refused, m.storeErrors, m.conns, m.watchers, m.watchEvents, m.watchDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observer counts requests by operation and status, their latency, and
// refused handshakes by reason.
func (m *metrics) observer() Observer {
	return Observer{
		Handshake: func(e HandshakeEvent) {
			if e.Err != nil {
				m.refused.WithLabelValues(string(e.Reason)).Inc()
			}
		},
		Request: func(e RequestEvent) {
			m.requests.WithLabelValues(e.Op, codeLabel(e.Status)).Inc()
			if o, ok := m.duration[e.Op]; ok {
				o.Observe(e.Duration.Seconds())
			}
		},
	}
}

// codeLabel avoids formatting the status code on every request.
func codeLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	case 405:
		return "405"
	case 410:
		return "410"
	case 412:
		return "412"
	case 413:
		return "413"
	case 500:
		return "500"
	case 503:
		return "503"
	}
	return "other"
}
