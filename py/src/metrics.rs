//! `ServerMetrics`: a server's counters (ferrows-core's `metrics`) for Python. The sync face
//! gets its server's from the engine; the asyncio face makes one per server and hands it to
//! each accepted connection's `ProtocolCore`.

use std::sync::Arc;

use ferrows_core::metrics::{
    Refusal, ServerMetrics, CLOSE_CODES, FIRST_CLOSE_CODE, PING_LATENCY_BOUNDS, TEXT_CONTENT_TYPE,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// One metric family: `(name, kind, help, [(sample_name, labels, value)])`.
type FamilyTuple = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(String, Vec<(&'static str, String)>, f64)>,
);

/// A server's counters, shared with its connections.
#[pyclass(module = "ferrows._ferrows", name = "ServerMetrics", frozen)]
pub struct PyServerMetrics(pub Arc<ServerMetrics>);

#[pymethods]
impl PyServerMetrics {
    /// New counters, all zero.
    #[new]
    fn new() -> Self {
        Self(Arc::default())
    }

    /// The counters' values as a dict (see docs/metrics.md).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = self.0.snapshot();
        let out = PyDict::new(py);
        out.set_item("open", snapshot.open())?;
        out.set_item("accepted", snapshot.accepted)?;
        let refused = PyDict::new(py);
        for (reason, count) in Refusal::ALL.iter().zip(snapshot.refused) {
            refused.set_item(reason.name(), count)?;
        }
        out.set_item("refused", refused)?;
        out.set_item("closed", snapshot.closed)?;
        out.set_item("messages_in", snapshot.messages_in)?;
        out.set_item("messages_out", snapshot.messages_out)?;
        out.set_item("bytes_in", snapshot.bytes_in)?;
        out.set_item("bytes_out", snapshot.bytes_out)?;
        let codes = PyDict::new(py);
        for (index, count) in snapshot.close_codes.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            match index {
                CLOSE_CODES => codes.set_item("other", count)?,
                _ => codes.set_item(FIRST_CLOSE_CODE + index as u16, count)?,
            }
        }
        out.set_item("close_codes", codes)?;
        let bounds: Vec<f64> = PING_LATENCY_BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .collect();
        let buckets: Vec<(f64, u64)> = bounds.into_iter().zip(snapshot.ping_buckets).collect();
        out.set_item("ping_latency_buckets", buckets)?;
        out.set_item("ping_count", snapshot.ping_buckets.iter().sum::<u64>())?;
        out.set_item("ping_seconds", snapshot.ping_seconds)?;
        out.set_item("broadcast_skips", snapshot.broadcast_skips)?;
        out.set_item("read_pauses", snapshot.read_pauses)?;
        out.set_item("write_pauses", snapshot.write_pauses)?;
        Ok(out)
    }

    /// The metric families, for a prometheus_client collector.
    fn families(&self) -> Vec<FamilyTuple> {
        self.0
            .snapshot()
            .families()
            .into_iter()
            .map(|family| {
                let samples = family
                    .samples
                    .into_iter()
                    .map(|s| (s.name, s.labels, s.value))
                    .collect();
                (family.name, family.kind.name(), family.help, samples)
            })
            .collect()
    }

    /// The counters in Prometheus' text exposition format.
    fn prometheus_text(&self) -> String {
        self.0.snapshot().prometheus_text()
    }

    /// The content type of `prometheus_text()`.
    #[classattr]
    const CONTENT_TYPE: &'static str = TEXT_CONTENT_TYPE;

    /// Counts `connections` connections a broadcast skipped (their send buffer was full).
    fn record_broadcast_skips(&self, connections: u64) {
        self.0.record_broadcast_skips(connections);
    }

    /// Counts a refused handshake; `reason` is bad_request, origin, subprotocol, limit or tls.
    fn record_refused(&self, reason: &str) -> PyResult<()> {
        let reason = Refusal::from_name(reason)
            .ok_or_else(|| PyValueError::new_err(format!("unknown refusal reason {reason:?}")))?;
        self.0.record_refused(reason);
        Ok(())
    }
}
