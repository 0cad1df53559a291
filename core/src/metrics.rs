//! Per-server counters: one [`ServerMetrics`] per server, shared by its connections through
//! an `Arc`. The engine's server and the asyncio face record into the same type, so every
//! counter and its exported name is defined here once. Counters are relaxed atomics: a
//! message costs a few uncontended additions, and a snapshot is a set of loads (each value
//! exact, the set not one instant).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::{CloseInfo, Error};

/// Why a server refused an opening handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid WebSocket upgrade request (malformed, wrong method, missing headers...).
    BadRequest,
    /// The Origin header is not in the allow-list.
    Origin,
    /// The subprotocol chosen was not one the client offered.
    Subprotocol,
    /// `max_connections` reached, or too many handshakes waiting.
    Limit,
    /// The TLS handshake failed.
    Tls,
}

impl Refusal {
    /// Every reason, in the order of [`MetricsSnapshot::refused`].
    pub const ALL: [Refusal; 5] = [
        Refusal::BadRequest,
        Refusal::Origin,
        Refusal::Subprotocol,
        Refusal::Limit,
        Refusal::Tls,
    ];

    /// The reason's label value.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Origin => "origin",
            Refusal::Subprotocol => "subprotocol",
            Refusal::Limit => "limit",
            Refusal::Tls => "tls",
        }
    }

    /// The reason named `name` (as [`Refusal::name`] gives it).
    pub fn from_name(name: &str) -> Option<Refusal> {
        Self::ALL.into_iter().find(|reason| reason.name() == name)
    }

    /// The reason a handshake failing with `error` was refused for.
    pub fn of(error: &Error) -> Refusal {
        match error {
            Error::InvalidOrigin(_) => Refusal::Origin,
            Error::Negotiation(_) => Refusal::Subprotocol,
            _ => Refusal::BadRequest,
        }
    }
}

/// Which side of a connection stopped for lack of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Reading stopped: received data not yet consumed is over its limit.
    Reading,
    /// Sending waited, or output was held: the peer reads slower than we send.
    Writing,
}

/// Upper bounds of the ping latency histogram's buckets, in seconds (a last bucket takes the
/// rest).
pub const PING_LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Close codes counted one by one: 1000 to 1015 (RFC 6455 and its registry). Others,
/// application codes among them, are counted together as "other".
pub const FIRST_CLOSE_CODE: u16 = 1000;
/// The number of close codes counted one by one, from [`FIRST_CLOSE_CODE`].
pub const CLOSE_CODES: usize = 16;

/// A connection that ended without a close frame either way (RFC 6455 §7.1.5).
const ABNORMAL_CLOSURE: u16 = 1006;

/// The counters of one server.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    accepted: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    closed: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// By code from [`FIRST_CLOSE_CODE`], then "other".
    close_codes: [AtomicU64; CLOSE_CODES + 1],
    /// Not cumulative: one count per bucket of [`PING_LATENCY_BOUNDS`], then the rest.
    ping_buckets: [AtomicU64; PING_LATENCY_BOUNDS.len() + 1],
    ping_nanos: AtomicU64,
    broadcast_skips: AtomicU64,
    pauses: [AtomicU64; 2],
}

/// The counters' values at one moment (each read on its own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Handshakes accepted (a 101 decided).
    pub accepted: u64,
    /// Handshakes refused, by [`Refusal::ALL`] order.
    pub refused: [u64; Refusal::ALL.len()],
    /// Accepted connections that have ended.
    pub closed: u64,
    /// Whole messages received.
    pub messages_in: u64,
    /// Whole messages sent.
    pub messages_out: u64,
    /// Message payload bytes received (after decompression).
    pub bytes_in: u64,
    /// Message payload bytes sent (before compression).
    pub bytes_out: u64,
    /// Ended connections by close code: 1000 to 1015, then every other code.
    pub close_codes: [u64; CLOSE_CODES + 1],
    /// Answered pings by latency bucket ([`PING_LATENCY_BOUNDS`], then the rest); not
    /// cumulative.
    pub ping_buckets: [u64; PING_LATENCY_BOUNDS.len() + 1],
    /// The sum of the latencies counted in `ping_buckets`, in seconds.
    pub ping_seconds: f64,
    /// Connections a broadcast skipped (their send buffer was over its limit).
    pub broadcast_skips: u64,
    /// Times reading stopped for lack of room.
    pub read_pauses: u64,
    /// Times sending waited for room.
    pub write_pauses: u64,
}

impl MetricsSnapshot {
    /// Connections accepted and not ended yet.
    pub fn open(&self) -> u64 {
        self.accepted.saturating_sub(self.closed)
    }
}

impl ServerMetrics {
    /// A handshake was accepted: its connection counts as open until it ends.
    pub fn record_accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// A handshake was refused for `reason`.
    pub fn record_refused(&self, reason: Refusal) {
        self.refused[reason as usize].fetch_add(1, Relaxed);
    }

    /// An accepted connection ended as `info` tells: its code is the peer's close code, else
    /// ours, else 1006.
    pub fn record_closed(&self, info: &CloseInfo) {
        let code = info
            .rcvd
            .as_ref()
            .or(info.sent.as_ref())
            .map_or(ABNORMAL_CLOSURE, |frame| frame.code);
        let index = usize::from(code.wrapping_sub(FIRST_CLOSE_CODE)).min(CLOSE_CODES);
        self.close_codes[index].fetch_add(1, Relaxed);
        self.closed.fetch_add(1, Relaxed);
    }

    /// Payload bytes of a message received; `whole` when they end it.
    #[inline]
    pub fn record_received(&self, bytes: usize, whole: bool) {
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
        if whole {
            self.messages_in.fetch_add(1, Relaxed);
        }
    }

    /// Payload bytes of a message sent; `whole` when they end it.
    #[inline]
    pub fn record_sent(&self, bytes: usize, whole: bool) {
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
        if whole {
            self.messages_out.fetch_add(1, Relaxed);
        }
    }

    /// A pong answered one of our pings after `latency`.
    pub fn record_ping_latency(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = PING_LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(PING_LATENCY_BOUNDS.len());
        self.ping_buckets[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.ping_nanos.fetch_add(nanos, Relaxed);
    }

    /// A broadcast skipped `connections` connections (slow consumers).
    pub fn record_broadcast_skips(&self, connections: u64) {
        self.broadcast_skips.fetch_add(connections, Relaxed);
    }

    /// A connection paused on `side` for lack of room.
    pub fn record_pause(&self, side: Pause) {
        self.pauses[side as usize].fetch_add(1, Relaxed);
    }

    /// The counters' current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let load = |counters: &[AtomicU64], out: &mut [u64]| {
            for (value, counter) in out.iter_mut().zip(counters) {
                *value = counter.load(Relaxed);
            }
        };
        let mut snapshot = MetricsSnapshot {
            accepted: self.accepted.load(Relaxed),
            closed: self.closed.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            ping_seconds: self.ping_nanos.load(Relaxed) as f64 / 1e9,
            broadcast_skips: self.broadcast_skips.load(Relaxed),
            read_pauses: self.pauses[Pause::Reading as usize].load(Relaxed),
            write_pauses: self.pauses[Pause::Writing as usize].load(Relaxed),
            ..MetricsSnapshot::default()
        };
        load(&self.refused, &mut snapshot.refused);
        load(&self.close_codes, &mut snapshot.close_codes);
        load(&self.ping_buckets, &mut snapshot.ping_buckets);
        // `accepted` was read before `closed`: connections accepted and ended in between
        // must not make the open count negative.
        snapshot.accepted = snapshot.accepted.max(snapshot.closed);
        snapshot
    }
}

/// The kind of a metric family, as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up (its sample is named `<family>_total`).
    Counter,
    /// Buckets, a count and a sum.
    Histogram,
}

impl FamilyKind {
    /// The kind's name in the exposition format.
    pub fn name(self) -> &'static str {
        match self {
            FamilyKind::Gauge => "gauge",
            FamilyKind::Counter => "counter",
            FamilyKind::Histogram => "histogram",
        }
    }
}

/// One sample of a family: its full name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (the family's, with `_total`, `_bucket`... as the kind requires).
    pub name: String,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family, as Prometheus exposes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family's name (without `_total` for a counter).
    pub name: &'static str,
    /// Gauge, counter or histogram.
    pub kind: FamilyKind,
    /// What it measures.
    pub help: &'static str,
    /// Its samples.
    pub samples: Vec<Sample>,
}

impl Family {
    fn new(name: &'static str, kind: FamilyKind, help: &'static str) -> Self {
        Self {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn sample(mut self, suffix: &str, labels: &[(&'static str, String)], value: u64) -> Self {
        self.samples.push(Sample {
            name: format!("{}{suffix}", self.name),
            labels: labels.to_vec(),
            value: value as f64,
        });
        self
    }

    /// A counter family with one unlabelled sample.
    fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self::new(name, FamilyKind::Counter, help).sample("_total", &[], value)
    }
}

/// Prometheus' text exposition format, version 0.0.4: what `/metrics` answers with.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl MetricsSnapshot {
    /// The metric families, named `ferrows_*`, in the order they are exposed.
    pub fn families(&self) -> Vec<Family> {
        use FamilyKind::*;
        let mut refused = Family::new(
            "ferrows_handshakes_refused",
            Counter,
            "Opening handshakes refused, by reason.",
        );
        for (reason, count) in Refusal::ALL.iter().zip(self.refused) {
            refused = refused.sample("_total", &[("reason", reason.name().into())], count);
        }
        let mut closed = Family::new(
            "ferrows_connections_closed",
            Counter,
            "Connections ended, by close code (the peer's, else ours, else 1006).",
        );
        for (index, count) in self.close_codes.iter().enumerate() {
            let code = match index {
                CLOSE_CODES => "other".to_owned(),
                _ => (FIRST_CLOSE_CODE + index as u16).to_string(),
            };
            if *count > 0 {
                closed = closed.sample("_total", &[("code", code)], *count);
            }
        }
        let mut latency = Family::new(
            "ferrows_ping_latency_seconds",
            Histogram,
            "Round-trip time of answered pings.",
        );
        let mut cumulative = 0;
        for (bound, count) in PING_LATENCY_BOUNDS.iter().zip(self.ping_buckets) {
            cumulative += count;
            latency = latency.sample("_bucket", &[("le", bound.to_string())], cumulative);
        }
        cumulative += self.ping_buckets[PING_LATENCY_BOUNDS.len()];
        latency = latency
            .sample("_bucket", &[("le", "+Inf".into())], cumulative)
            .sample("_count", &[], cumulative);
        latency.samples.push(Sample {
            name: "ferrows_ping_latency_seconds_sum".into(),
            labels: Vec::new(),
            value: self.ping_seconds,
        });
        let pauses = Family::new(
            "ferrows_backpressure_pauses",
            Counter,
            "Times a connection stopped reading, or sending waited, for lack of room.",
        )
        .sample(
            "_total",
            &[("direction", "reading".into())],
            self.read_pauses,
        )
        .sample(
            "_total",
            &[("direction", "writing".into())],
            self.write_pauses,
        );
        vec![
            Family::new(
                "ferrows_connections_open",
                Gauge,
                "Connections accepted and not ended.",
            )
            .sample("", &[], self.open()),
            Family::counter(
                "ferrows_handshakes_accepted",
                "Opening handshakes accepted.",
                self.accepted,
            ),
            refused,
            Family::counter(
                "ferrows_messages_received",
                "Whole messages received.",
                self.messages_in,
            ),
            Family::counter(
                "ferrows_messages_sent",
                "Whole messages sent.",
                self.messages_out,
            ),
            Family::counter(
                "ferrows_bytes_received",
                "Message payload bytes received, after decompression.",
                self.bytes_in,
            ),
            Family::counter(
                "ferrows_bytes_sent",
                "Message payload bytes sent, before compression.",
                self.bytes_out,
            ),
            closed,
            latency,
            Family::counter(
                "ferrows_broadcast_skips",
                "Connections a broadcast skipped because their send buffer was full.",
                self.broadcast_skips,
            ),
            pauses,
        ]
    }

    /// The families in Prometheus' text exposition format ([`TEXT_CONTENT_TYPE`]).
    pub fn prometheus_text(&self) -> String {
        let mut text = String::new();
        for family in self.families() {
            // The 0.0.4 text format names a counter by its sample, with `_total`.
            let total = if family.kind == FamilyKind::Counter {
                "_total"
            } else {
                ""
            };
            let _ = writeln!(text, "# HELP {}{total} {}", family.name, family.help);
            let _ = writeln!(text, "# TYPE {}{total} {}", family.name, family.kind.name());
            for sample in &family.samples {
                text.push_str(&sample.name);
                if !sample.labels.is_empty() {
                    let labels: Vec<String> = sample
                        .labels
                        .iter()
                        .map(|(name, value)| format!("{name}=\"{value}\""))
                        .collect();
                    let _ = write!(text, "{{{}}}", labels.join(","));
                }
                let _ = writeln!(text, " {}", sample.value);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CloseFrame;

    fn frame(code: u16) -> Option<CloseFrame> {
        Some(CloseFrame {
            code,
            reason: String::new(),
        })
    }

    #[test]
    fn close_codes_prefer_the_peers_then_ours_then_1006() {
        let metrics = ServerMetrics::default();
        metrics.record_accepted();
        metrics.record_accepted();
        metrics.record_accepted();
        metrics.record_accepted();
        let both = CloseInfo {
            rcvd: frame(1001),
            sent: frame(1000),
            rcvd_then_sent: Some(true),
        };
        metrics.record_closed(&both);
        metrics.record_closed(&CloseInfo {
            sent: frame(1009),
            ..CloseInfo::default()
        });
        metrics.record_closed(&CloseInfo::default());
        metrics.record_closed(&CloseInfo {
            rcvd: frame(4000),
            ..CloseInfo::default()
        });
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.close_codes[1], 1);
        assert_eq!(snapshot.close_codes[9], 1);
        assert_eq!(snapshot.close_codes[6], 1);
        assert_eq!(snapshot.close_codes[CLOSE_CODES], 1);
        assert_eq!((snapshot.closed, snapshot.open()), (4, 0));
    }

    #[test]
    fn ping_latencies_fill_cumulative_buckets() {
        let metrics = ServerMetrics::default();
        metrics.record_ping_latency(Duration::from_micros(300));
        metrics.record_ping_latency(Duration::from_millis(3));
        metrics.record_ping_latency(Duration::from_secs(10));
        let text = metrics.snapshot().prometheus_text();
        assert!(text.contains("ferrows_ping_latency_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("ferrows_ping_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("ferrows_ping_latency_seconds_bucket{le=\"2.5\"} 2\n"));
        assert!(text.contains("ferrows_ping_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ferrows_ping_latency_seconds_count 3\n"));
        assert!(text.contains("ferrows_ping_latency_seconds_sum 10.0033\n"));
    }

    #[test]
    fn refusal_names_round_trip() {
        for reason in Refusal::ALL {
            assert_eq!(Refusal::from_name(reason.name()), Some(reason));
        }
        assert_eq!(Refusal::from_name("nope"), None);
        let origin = Error::InvalidOrigin(None);
        assert_eq!(Refusal::of(&origin), Refusal::Origin);
    }
}
