//! What the Prometheus endpoint (`metrics_listen`, `GET /metrics`) shows, rendered in the
//! text exposition format 0.0.4: the figures are gathered by the daemon (the core loop's
//! counters, the sockets' refusals, the tables' gauges, the XCAP server's answers) into
//! a [`Snapshot`], and rendered here without any I/O. Names follow Prometheus's
//! conventions: `presenced_` prefix, `_total` on counters, seconds and bytes as units.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::presence::EngineStats;
use crate::sip::endpoint::Stats;
use crate::store::EventRows;

/// Bucket bounds (seconds) of the latency histograms: a core loop that keeps up
/// answers in well under a millisecond; a flush to a slow flash card takes a second.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A cumulative histogram with fixed bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or under each bound (not yet cumulative), then above the last.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(SECONDS_BUCKETS)
    }
}

/// Answers counted by status code (the XCAP server's), shared between its tasks.
#[derive(Debug, Default)]
pub struct StatusCounts(Mutex<BTreeMap<u16, u64>>);

impl StatusCounts {
    pub fn record(&self, status: u16) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(status).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The core loop's figures.
#[derive(Debug, Clone, Default)]
pub struct CoreFigures {
    pub uptime_s: u64,
    pub endpoint: Stats,
    /// Final responses sent, by request method and status code.
    pub answered: BTreeMap<(&'static str, u16), u64>,
    pub engine: EngineStats,
    /// New requests refused with 503 because the core loop was behind.
    pub shed: u64,
    pub resident_subscriptions: usize,
    pub transactions_in_flight: usize,
    /// How long messages waited between their socket and the core loop.
    pub queue_delay: Histogram,
    /// How long each flush to disk took.
    pub flush: Histogram,
    pub flush_failures: u64,
    /// How long each timer round (transaction timers, expiry, housekeeping) took.
    pub timer_round: Histogram,
    /// Datagrams the UDP sending thread dropped for being too far behind.
    pub udp_send_dropped: u64,
}

/// What the sockets refused or dropped before the core loop saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketFigures {
    /// New requests answered 503 because the queue to the core loop was full.
    pub queue_refused: u64,
    /// Retransmissions of new requests dropped because that queue was full.
    pub queue_dropped: u64,
    /// Requests answered 503 for going over `max_requests_per_source`.
    pub rate_refused: u64,
    /// Requests dropped unanswered past that.
    pub rate_dropped: u64,
}

/// What the tables hold (read off the core loop).
#[derive(Debug, Clone, Default)]
pub struct TableFigures {
    pub per_event: BTreeMap<String, EventRows>,
    /// Watcher records (the `watchers` table) by status name.
    pub watchers: BTreeMap<&'static str, u64>,
    pub size_on_disk: u64,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub core: CoreFigures,
    pub sockets: SocketFigures,
    pub tables: Option<TableFigures>,
    pub xcap: BTreeMap<u16, u64>,
}

/// Writes metric families; each family's HELP and TYPE come once, before its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            self.sample(&bucket, &[("le", &bound.to_string())], cumulative);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum);
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(8 * 1024));
    let c = &s.core;
    o.one(
        "presenced_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        c.uptime_s,
    );

    o.family(
        "presenced_sip_requests_total",
        "counter",
        "SIP requests received that started a server transaction.",
    );
    o.sample("presenced_sip_requests_total", &[], c.endpoint.requests_in);
    o.family(
        "presenced_sip_responses_total",
        "counter",
        "Final SIP responses sent, by request method and status code.",
    );
    for ((method, status), n) in &c.answered {
        o.sample(
            "presenced_sip_responses_total",
            &[("method", method), ("code", &status.to_string())],
            n,
        );
    }
    o.one(
        "presenced_sip_retransmissions_absorbed_total",
        "counter",
        "Request retransmissions answered from a transaction without reaching the engine.",
        c.endpoint.retransmissions_absorbed,
    );
    o.one(
        "presenced_sip_rejected_stateless_total",
        "counter",
        "Requests answered without a transaction (malformed, unsupported).",
        c.endpoint.rejected_stateless,
    );
    o.one(
        "presenced_sip_dropped_total",
        "counter",
        "Messages the SIP layer dropped unanswered (unparseable, stray responses).",
        c.endpoint.dropped,
    );
    o.one(
        "presenced_requests_shed_total",
        "counter",
        "New requests refused with 503 because the core loop was behind.",
        c.shed,
    );

    o.one(
        "presenced_publish_total",
        "counter",
        "PUBLISH requests the engine accepted.",
        c.engine.publishes,
    );
    o.one(
        "presenced_subscribe_total",
        "counter",
        "New subscription dialogs the engine accepted.",
        c.engine.subscribes,
    );
    o.one(
        "presenced_notify_sent_total",
        "counter",
        "NOTIFY requests sent.",
        c.engine.notifies_sent,
    );
    o.one(
        "presenced_notify_failed_total",
        "counter",
        "NOTIFY transactions that failed (error response, timeout, transport error).",
        c.engine.notify_failures,
    );
    o.one(
        "presenced_notify_retransmissions_total",
        "counter",
        "NOTIFY retransmissions over UDP.",
        c.endpoint.client_retransmissions,
    );
    o.one(
        "presenced_notify_timeouts_total",
        "counter",
        "NOTIFY transactions that got no answer in 64*T1.",
        c.endpoint.client_timeouts,
    );
    o.one(
        "presenced_notify_coalesced_total",
        "counter",
        "State changes folded into a NOTIFY already waiting behind one in flight.",
        c.engine.notifies_coalesced,
    );
    o.one(
        "presenced_aggregations_total",
        "counter",
        "Aggregated documents computed (once per change, shared by every watcher).",
        c.engine.aggregations,
    );
    o.one(
        "presenced_resident_subscriptions",
        "gauge",
        "Subscriptions held in memory (NOTIFY in flight or waiting).",
        c.resident_subscriptions,
    );
    o.one(
        "presenced_transactions_in_flight",
        "gauge",
        "SIP transactions not yet finished, and requests waiting for a flush.",
        c.transactions_in_flight,
    );

    let k = &s.sockets;
    o.family(
        "presenced_queue_full_total",
        "counter",
        "New requests turned away at the socket because the queue to the core loop was \
         full, by what was done with them (503, or dropped when a retransmission).",
    );
    o.sample(
        "presenced_queue_full_total",
        &[("action", "refused")],
        k.queue_refused,
    );
    o.sample(
        "presenced_queue_full_total",
        &[("action", "dropped")],
        k.queue_dropped,
    );
    o.family(
        "presenced_source_rate_limited_total",
        "counter",
        "Requests over max_requests_per_source, by what was done with them.",
    );
    o.sample(
        "presenced_source_rate_limited_total",
        &[("action", "refused")],
        k.rate_refused,
    );
    o.sample(
        "presenced_source_rate_limited_total",
        &[("action", "dropped")],
        k.rate_dropped,
    );
    o.one(
        "presenced_udp_send_dropped_total",
        "counter",
        "Datagrams dropped because the UDP sending thread was too far behind.",
        c.udp_send_dropped,
    );

    o.histogram(
        "presenced_core_queue_delay_seconds",
        "How long a message waited between its socket and the core loop (core-loop lag).",
        &c.queue_delay,
    );
    o.histogram(
        "presenced_store_flush_duration_seconds",
        "How long each flush of the database to disk took.",
        &c.flush,
    );
    o.one(
        "presenced_store_flush_failures_total",
        "counter",
        "Flushes to disk that failed.",
        c.flush_failures,
    );
    o.histogram(
        "presenced_timer_round_duration_seconds",
        "How long each timer round took (transaction timers, expiry sweep, housekeeping).",
        &c.timer_round,
    );

    if let Some(t) = &s.tables {
        o.family(
            "presenced_publications",
            "gauge",
            "Stored publications, by event package.",
        );
        for (event, rows) in &t.per_event {
            o.sample(
                "presenced_publications",
                &[("event", event)],
                rows.publications,
            );
        }
        o.family(
            "presenced_subscriptions",
            "gauge",
            "Stored subscription dialogs, by event package.",
        );
        for (event, rows) in &t.per_event {
            o.sample(
                "presenced_subscriptions",
                &[("event", event)],
                rows.subscriptions,
            );
        }
        o.family(
            "presenced_watchers",
            "gauge",
            "Watcher records (authorization state per watcher), by status.",
        );
        for (status, n) in &t.watchers {
            o.sample("presenced_watchers", &[("status", status)], n);
        }
        o.one(
            "presenced_store_size_bytes",
            "gauge",
            "Size of the database on disk.",
            t.size_on_disk,
        );
    }

    o.family(
        "presenced_xcap_responses_total",
        "counter",
        "Responses of the integrated XCAP server, by status code.",
    );
    for (status, n) in &s.xcap {
        o.sample(
            "presenced_xcap_responses_total",
            &[("code", &status.to_string())],
            n,
        );
    }
    o.0
}

/// A request method as a label: the methods SIP defines, anything else `other`, so a
/// client cannot grow the label set.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "PUBLISH",
        "SUBSCRIBE",
        "NOTIFY",
        "OPTIONS",
        "REGISTER",
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "MESSAGE",
        "INFO",
        "PRACK",
        "UPDATE",
        "REFER",
    ];
    KNOWN
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_with_inf() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.5, 7.0] {
            h.observe(v);
        }
        let mut s = Snapshot::default();
        s.core.flush = h;
        let text = render(&s);
        assert!(text.contains("presenced_store_flush_duration_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("presenced_store_flush_duration_seconds_bucket{le=\"1\"} 3\n"));
        assert!(text.contains("presenced_store_flush_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("presenced_store_flush_duration_seconds_count 4\n"));
        assert!(text.contains("presenced_store_flush_duration_seconds_sum 8.05\n"));
    }

    #[test]
    fn every_family_is_declared_once_before_its_samples() {
        let mut s = Snapshot::default();
        s.core.answered.insert(("PUBLISH", 200), 3);
        s.core.answered.insert(("SUBSCRIBE", 200), 1);
        s.tables = Some(TableFigures::default());
        let text = render(&s);
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{name} before its TYPE");
            }
        }
        assert!(text.contains("presenced_sip_responses_total{method=\"PUBLISH\",code=\"200\"} 3"));
    }

    #[test]
    fn label_values_are_escaped_and_methods_bounded() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(method_label("publish"), "PUBLISH");
        assert_eq!(method_label("FOO"), "other");
    }
}
