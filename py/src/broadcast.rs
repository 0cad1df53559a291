//! Broadcast for both Python faces: the message is encoded once
//! (`ferrows_core::protocol::Broadcast`); `ferrows.broadcast` applies the policy and
//! reports what happened to each connection.

use ferrows_core::engine::{self, SlowPolicy};
use ferrows_core::protocol::Broadcast;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::aio::PyProtocolCore;
use crate::connection::{Outgoing, PyConnection};
use crate::errors::to_py_err;

/// The sync face: sends `message` to every connection (with the GIL released) and returns
/// each one's outcome as an int: 0 sent, 1 skipped, 2 closed, 3 not open. `close`: the
/// `(code, reason)` a slow connection is closed with; None skips it.
#[pyfunction]
#[pyo3(signature = (connections, message, close=None))]
pub fn broadcast_engine(
    py: Python<'_>,
    connections: Vec<PyRef<'_, PyConnection>>,
    message: Outgoing,
    close: Option<(u16, String)>,
) -> PyResult<Vec<u8>> {
    let policy = match close {
        Some((code, reason)) => SlowPolicy::Close { code, reason },
        None => SlowPolicy::Skip,
    };
    let engines: Vec<engine::Connection> = connections.iter().map(|c| c.engine().clone()).collect();
    let (kind, data) = message.parts();
    let outcomes = py
        .detach(|| engine::broadcast(&engines, kind, data, &policy))
        .map_err(|e| to_py_err(py, e, None))?;
    Ok(outcomes.into_iter().map(|outcome| outcome as u8).collect())
}

/// The asyncio face: encodes `message` for every core and returns, for each, the bytes its
/// transport writes: cores with nothing waiting share one `bytes` object per encoding; a core
/// with output waiting (a batch of this turn of the loop) returns it with the message after
/// it. None for a core that cannot send a whole message now (closing, or in the middle of a
/// fragmented message), which the face checks beforehand.
#[pyfunction]
pub fn broadcast_frames<'py>(
    py: Python<'py>,
    cores: Vec<PyRefMut<'py, PyProtocolCore>>,
    message: Outgoing,
) -> Vec<Option<Bound<'py, PyBytes>>> {
    let (kind, data) = message.parts();
    let mut broadcast = Broadcast::new(kind, data);
    // One Python object per shared frame, found by the address of its bytes.
    let mut objects: Vec<(*const u8, Bound<'py, PyBytes>)> = Vec::new();
    let mut writes = Vec::with_capacity(cores.len());
    for mut core in cores {
        let protocol = core.protocol_mut();
        if protocol.check_send_message().is_err() {
            writes.push(None);
            continue;
        }
        let shared = match broadcast.frame_for(protocol) {
            Some(frame) if !protocol.has_output() => {
                protocol.record_shared(&frame);
                Some(frame.bytes())
            }
            _ => None,
        };
        let write = match shared {
            Some(frame) => match objects
                .iter()
                .find(|(address, _)| *address == frame.as_ptr())
            {
                Some((_, object)) => object.clone(),
                None => {
                    let object = PyBytes::new(py, frame);
                    objects.push((frame.as_ptr(), object.clone()));
                    object
                }
            },
            None => match broadcast.send_to(protocol) {
                Ok(()) => PyBytes::new(py, &protocol.take_output()),
                Err(_) => {
                    writes.push(None);
                    continue;
                }
            },
        };
        writes.push(Some(write));
    }
    writes
}
